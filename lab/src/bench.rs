//! stub
pub fn main(_: &[String]) -> crate::Result<std::process::ExitCode> { Err("todo".into()) }
