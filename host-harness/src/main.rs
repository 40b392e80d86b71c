//! `kosmo`: parse the command line, run it, exit with its code (see [`kosmo::cli`]).

fn main() {
    std::process::exit(kosmo::cli::main());
}
