//! Commit-record decoding (`CommitRecord::decode`).
//!
//! Properties: decoding never panics; a record that decodes re-encodes to bytes that decode to
//! the same record, and that encoding is stable (encode(decode(encode(r))) == encode(r)).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ordo_tcc::commit_stream::CommitRecord;

fuzz_target!(|data: &[u8]| {
    let Ok(record) = CommitRecord::decode(Some(data), 0) else {
        return;
    };
    let bytes = record.encode();
    let again = CommitRecord::decode(Some(&bytes), 0).expect("an encoded record decodes");
    assert_eq!(again, record, "decode(encode(r)) == r");
    assert_eq!(again.encode(), bytes, "the encoding is stable");
});
