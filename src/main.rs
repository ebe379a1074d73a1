//! The `tickgate` binary: sets up the allocator, parses the command line and runs the
//! command ([`tickgate::cli`]), exiting with the code its error names.

use std::process::ExitCode;

use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() -> ExitCode {
    // Before any thread starts: freed memory goes back to the OS at once (src/alloc.rs).
    tickgate::alloc::return_freed_memory_promptly();
    let m = tickgate::cli::command().get_matches();
    match tickgate::cli::run(&m) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tickgate: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
