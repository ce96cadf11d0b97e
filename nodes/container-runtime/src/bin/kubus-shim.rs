fn main() -> std::process::ExitCode {
    kubus_container_runtime::shim_main(std::env::args().skip(1).collect())
}
