#![no_main]
// Panics that Strata contains (a dependency's decoder refusing bad input) are not crashes:
// silence the hook; a panic escaping the target still aborts and is reported.
libfuzzer_sys::fuzz_target!(
    init: { std::panic::set_hook(Box::new(|_| {})) },
    |data: &[u8]| strata_fuzz::ipc_upload(data)
);
