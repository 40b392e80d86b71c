//! `kosmo`: parse the command line, run it, exit with its code (see [`kosmo`]).

fn main() {
    std::process::exit(kosmo::main());
}
