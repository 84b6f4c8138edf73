fn main() -> std::process::ExitCode {
    ekko::cli::main()
}
