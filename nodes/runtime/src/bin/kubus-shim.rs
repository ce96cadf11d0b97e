fn main() -> std::process::ExitCode {
    kubus_node_runtime::shim_main(std::env::args().skip(1).collect())
}
