use std::process::ExitCode;

// The SIP hot path allocates small, short-lived buffers per message; mimalloc's
// thread-local free lists serve those several times faster than glibc's malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    switchboard::cli::main()
}
