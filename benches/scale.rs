//! `cargo bench --bench scale`: plan, validate and apply at scale against a real server on
//! 127.0.0.1 with injected latency. Sizes come from `SCALE_*` variables (see
//! the README's "Scale and flaky networks" section); the table is printed and written to
//! target/bench-results/scale.md (or `SCALE_OUT`).

#[path = "../tests/support/mod.rs"]
mod support;

#[path = "scale/run.rs"]
mod run;

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` would pass test filters: this
    // benchmark only runs when asked for as one.
    if !std::env::args().any(|a| a == "--bench") {
        println!("scale: run with `cargo bench --bench scale`");
        return;
    }
    let config = run::Config::from_env();
    println!(
        "Running the scale benchmark ({} deployments x {} schedules x {} secrets)...",
        config.deployments, config.schedules, config.secrets
    );
    run::run(&config);
}
