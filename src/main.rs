//! The `rowcast` command. All the work is in the library; this only runs it.

// An apply allocates a few small buffers per invocation, tens of thousands of times a
// second; mimalloc serves them in a fraction of the system allocator's time. DuckDB's own
// memory is unaffected (it allocates through the C++ runtime).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    rowcast::cli::main()
}
