#![no_main]
libfuzzer_sys::fuzz_target!(init: sp_fuzz::init(), |data: &[u8]| sp_fuzz::run("metadata_http", data));
