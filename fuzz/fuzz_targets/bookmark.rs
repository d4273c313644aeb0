//! Bookmark decoding: the binary form and the text form.
//!
//! Properties: decoding never panics; whatever decodes re-encodes to the same bytes (one
//! bookmark, one encoding), and its text form parses back to it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ordo_tcc::Bookmark;

fuzz_target!(|data: &[u8]| {
    if let Ok(b) = Bookmark::from_bytes(data) {
        assert_eq!(b.to_bytes(), data, "binary form is canonical");
        let text = b.to_string();
        assert_eq!(text.parse::<Bookmark>(), Ok(b), "text form round-trips");
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(b) = text.parse::<Bookmark>()
    {
        assert_eq!(Bookmark::from_bytes(&b.to_bytes()), Ok(b));
        assert_eq!(b.to_string(), text.trim(), "text form is canonical");
    }
});
