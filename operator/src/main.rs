fn main() {
    eprintln!("podmirror-operator: not built yet");
    std::process::exit(2);
}
