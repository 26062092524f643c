fn main() -> std::process::ExitCode {
    meltano_cloud::cli::main()
}
