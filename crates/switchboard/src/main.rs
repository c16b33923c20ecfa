use std::process::ExitCode;

fn main() -> ExitCode {
    switchboard::cli::main()
}
