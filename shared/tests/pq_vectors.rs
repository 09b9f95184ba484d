//! The 19 hybrid (post-quantum) vectors of C2SP CCTV's age suite, opened with kseal's
//! `mlkem768x25519` identity: each succeeds with the recorded payload, or fails the way
//! the vector expects (no match, a header failure, …). See `cctv-age/README.md`.
#![allow(clippy::unwrap_used)]

use std::io::Read;

use kseal_core::pq::PqIdentity;

struct Vector {
    name: String,
    expect: String,
    payload: Option<String>,
    identities: Vec<Box<dyn age::Identity>>,
    armored: bool,
    file: Vec<u8>,
}

fn read(path: &std::path::Path) -> Vector {
    let bytes = std::fs::read(path).unwrap();
    let split = bytes.windows(2).position(|w| w == b"\n\n").unwrap();
    let header = std::str::from_utf8(&bytes[..split]).unwrap();
    let mut file = bytes[split + 2..].to_vec();
    let mut vector = Vector {
        name: path.file_name().unwrap().to_string_lossy().into_owned(),
        expect: String::new(),
        payload: None,
        identities: Vec::new(),
        armored: false,
        file: Vec::new(),
    };
    for line in header.lines() {
        let (key, value) = line.split_once(": ").unwrap();
        match key {
            "expect" => vector.expect = value.to_owned(),
            "payload" => vector.payload = Some(value.to_owned()),
            "identity" if value.starts_with("AGE-SECRET-KEY-PQ-") => {
                vector
                    .identities
                    .push(Box::new(value.parse::<PqIdentity>().unwrap()));
            }
            "identity" => vector
                .identities
                .push(Box::new(value.parse::<age::x25519::Identity>().unwrap())),
            "armored" => vector.armored = value == "yes",
            "compressed" => {
                assert_eq!(value, "zlib");
                let mut plain = Vec::new();
                flate2::read::ZlibDecoder::new(&file[..])
                    .read_to_end(&mut plain)
                    .unwrap();
                file = plain;
            }
            "file key" | "comment" => {}
            other => panic!("{}: unknown header {other:?}", path.display()),
        }
    }
    vector.file = file;
    vector
}

/// What opening the file came to: "success" with the payload, or the vector's name for
/// the failure.
fn open(v: &Vector) -> (String, Option<Vec<u8>>) {
    let input: Box<dyn Read> = if v.armored {
        Box::new(age::armor::ArmoredReader::new(&v.file[..]))
    } else {
        Box::new(&v.file[..])
    };
    let decryptor = match age::Decryptor::new(input) {
        Ok(d) => d,
        Err(_) => return ("header failure".into(), None),
    };
    let identities = v.identities.iter().map(|i| i.as_ref());
    let mut reader = match decryptor.decrypt(identities) {
        Ok(r) => r,
        Err(age::DecryptError::NoMatchingKeys) => return ("no match".into(), None),
        Err(age::DecryptError::InvalidMac) => return ("HMAC failure".into(), None),
        Err(_) => return ("header failure".into(), None),
    };
    let mut payload = Vec::new();
    match reader.read_to_end(&mut payload) {
        Ok(_) => ("success".into(), Some(payload)),
        Err(_) => ("payload failure".into(), None),
    }
}

#[test]
fn every_hybrid_vector_has_its_expected_outcome() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cctv-age");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            continue;
        }
        let vector = read(&path);
        let (outcome, payload) = open(&vector);
        assert_eq!(outcome, vector.expect, "{}", vector.name);
        if let Some(payload) = payload {
            let digest = ring::digest::digest(&ring::digest::SHA256, &payload);
            let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(Some(hex), vector.payload, "{}: payload", vector.name);
        }
        seen += 1;
    }
    assert_eq!(seen, 19, "every hybrid vector ran");
}
