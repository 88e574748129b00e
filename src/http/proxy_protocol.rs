//! PLACEHOLDER until the helper's parser lands.
pub enum Preface {
    Incomplete,
    Header {
        len: usize,
        source: Option<std::net::SocketAddr>,
    },
}
pub fn parse(_buf: &[u8]) -> Result<Preface, &'static str> {
    Err("PROXY protocol not built yet")
}
