/// mimalloc instead of glibc's malloc: the ingest path allocates many small, short-lived
/// values (fields, rows, JSON) across threads, where glibc spent a fifth of the CPU
/// (`perf`, bench/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    ekko::cli::main()
}
