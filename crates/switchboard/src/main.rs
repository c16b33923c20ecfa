use std::process::ExitCode;

// The SIP hot path allocates small, short-lived buffers per message; mimalloc's
// thread-local free lists serve those several times faster than glibc's malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // No transparent huge pages for this process: mimalloc asks for them on its
    // arenas, and the kernel zeroes each fresh 2 MiB page whole on first touch. In a
    // call storm (memory grows with the transactions kept for 64×T1) that zeroing
    // took a third of the CPU: 560 µs per call with them, 357 µs without, and 40 %
    // more memory. Best effort: an old kernel without the flag just keeps them.
    let _ = nix::sys::prctl::set_thp_disable(true);
    switchboard::cli::main()
}
