fn main() {
    let a: Vec<String> = std::env::args().collect();
    let bin = wat::parse_file(&a[1]).unwrap();
    std::fs::write(&a[2], bin).unwrap();
}
