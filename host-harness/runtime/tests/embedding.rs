//! README's "Embedding" program is `examples/embed.rs`: run it here, and check that the README
//! shows exactly that program, so the documented way to embed cannot rot.

#[path = "../examples/embed.rs"]
mod embed;

#[test]
fn the_embedding_example_runs() {
    embed::main().expect("the example runs");
}

#[test]
fn the_readme_shows_the_example() {
    let readme = include_str!("../../../README.md");
    let example = include_str!("../examples/embed.rs");
    let body: String = example
        .lines()
        .filter(|l| !l.starts_with("//!"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        readme.contains(body.trim()),
        "README's Embedding section must show host-harness/runtime/examples/embed.rs verbatim"
    );
}
