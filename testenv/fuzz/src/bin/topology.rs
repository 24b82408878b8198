#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| sp_fuzz::run("topology", data));
