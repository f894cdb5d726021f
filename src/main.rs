#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    cellule::cli::main()
}
