//! Key custody on a PKCS#11 token: Debian's SoftHSM2, loaded at run time through
//! `cryptoki` as any HSM's module would be, with a non-extractable AES-256 KEK. Each test
//! runs in a child process of this binary with a token directory of its own: SoftHSM
//! reads `SOFTHSM2_CONF` when the module loads, and a test cannot change its own
//! process's environment.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{IDENTITY, context};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11 as Module};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use kseal_custody::{
    Context, Custodian, Error, Pkcs11, Pkcs11Config, unwrap_identity, wrap_identity,
};
use zeroize::Zeroizing;

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const TOKEN: &str = "kseal";
const PIN: &str = "31415926";
const DIR_VAR: &str = "KSEAL_TEST_SOFTHSM_DIR";

/// Runs `body` with a fresh SoftHSM token (label `kseal`, user PIN [`PIN`]) in a child
/// process of this test binary.
fn with_token(test: &str, body: impl FnOnce(&Path)) {
    if let Some(dir) = std::env::var_os(DIR_VAR) {
        body(Path::new(&dir));
        std::fs::write(Path::new(&dir).join("ran"), test).unwrap();
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let conf = softhsm_conf(dir.path());
    let init = Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            TOKEN,
            "--pin",
            PIN,
            "--so-pin",
            "27182818",
        ])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .expect("softhsm2-util (Debian's softhsm2, which .ci/run installs) must be on PATH");
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env("SOFTHSM2_CONF", &conf)
        .env(DIR_VAR, dir.path())
        .status()
        .unwrap();
    assert!(status.success(), "{test} failed in its SoftHSM process");
    // The child ran the test, not zero tests of that name.
    assert_eq!(
        std::fs::read_to_string(dir.path().join("ran")).unwrap(),
        test
    );
}

fn softhsm_conf(dir: &Path) -> PathBuf {
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    conf
}

/// A read-write session on the token, logged in as its user: what an HSM administrator's
/// tool holds.
fn admin_session() -> Session {
    let module = Module::new(MODULE).unwrap();
    let _ = module.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
    let slot = module
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| module.get_token_info(*s).unwrap().label().trim_end() == TOKEN)
        .unwrap();
    let session = module.open_rw_session(slot).unwrap();
    let _ = session.login(UserType::User, Some(&AuthPin::from(PIN.to_owned())));
    session
}

/// Makes a KEK on the token as an HSM administrator would: AES-256, on the token,
/// sensitive and never extractable.
fn make_kek(label: &str) {
    admin_session()
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::ValueLen(32.into()),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
                Attribute::Label(label.as_bytes().to_vec()),
            ],
        )
        .unwrap();
}

fn config(key: &str, pin: &str) -> Pkcs11Config {
    Pkcs11Config {
        module: MODULE.into(),
        token: TOKEN.into(),
        key: key.into(),
        pin: Zeroizing::new(pin.into()),
    }
}

fn token(key: &str) -> Custodian {
    Custodian::Pkcs11(Pkcs11::open(config(key, PIN)).unwrap())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_key_wrapped_on_the_token_opens_there_only_in_its_place() {
    with_token(
        "a_key_wrapped_on_the_token_opens_there_only_in_its_place",
        |_| {
            make_kek("kek-1");
            let token = token("kek-1");
            runtime().block_on(async {
                let wrapped = wrap_identity(&token, IDENTITY, &context()).await.unwrap();
                assert_eq!(
                    (wrapped.custodian.as_str(), wrapped.kek_id.as_str()),
                    ("pkcs11", "kek-1")
                );
                assert!(!String::from_utf8_lossy(&wrapped.to_json()).contains("AGE-SECRET-KEY"));
                let opened = unwrap_identity(&token, &wrapped, &context()).await.unwrap();
                assert_eq!(&*opened, IDENTITY);
                let moved = Context {
                    name: "kseal-key-copied".into(),
                    ..context()
                };
                let err = unwrap_identity(&token, &wrapped, &moved).await.unwrap_err();
                assert!(matches!(err, Error::WrongContext(_)), "{err}");
            });

            // The KEK itself never leaves the token: its value cannot be read.
            let session = admin_session();
            let kek = session
                .find_objects(&[Attribute::Label(b"kek-1".to_vec())])
                .unwrap()[0];
            let value = session.get_attributes(kek, &[AttributeType::Value]);
            assert!(
                !matches!(value.as_deref(), Ok([Attribute::Value(v)]) if !v.is_empty()),
                "the KEK's value was readable: {value:?}"
            );
        },
    );
}

#[test]
fn a_rotated_kek_wraps_new_keys_and_the_old_one_still_opens_old_keys() {
    with_token(
        "a_rotated_kek_wraps_new_keys_and_the_old_one_still_opens_old_keys",
        |_| {
            make_kek("kek-1");
            let before = runtime()
                .block_on(wrap_identity(&token("kek-1"), IDENTITY, &context()))
                .unwrap();
            make_kek("kek-2");
            let rotated = token("kek-2");
            runtime().block_on(async {
                let after = wrap_identity(&rotated, IDENTITY, &context()).await.unwrap();
                assert_eq!(after.kek_id, "kek-2");
                for wrapped in [&before, &after] {
                    let opened = unwrap_identity(&rotated, wrapped, &context())
                        .await
                        .unwrap();
                    assert_eq!(&*opened, IDENTITY);
                }
            });
        },
    );
}

#[test]
fn a_wrong_pin_a_missing_token_module_or_kek_is_an_error_that_names_it() {
    with_token(
        "a_wrong_pin_a_missing_token_module_or_kek_is_an_error_that_names_it",
        |_| {
            make_kek("kek-1");
            let wrong_pin = Pkcs11::open(config("kek-1", "00000000")).unwrap_err();
            assert!(matches!(wrong_pin, Error::Refused { .. }), "{wrong_pin}");
            let no_kek = Pkcs11::open(config("kek-9", PIN)).unwrap_err();
            assert!(matches!(no_kek, Error::Refused { .. }), "{no_kek}");
            assert!(no_kek.to_string().contains("kek-9"), "{no_kek}");
            let no_token = Pkcs11::open(Pkcs11Config {
                token: "elsewhere".into(),
                ..config("kek-1", PIN)
            })
            .unwrap_err();
            assert!(matches!(no_token, Error::Unreachable { .. }), "{no_token}");
            let no_module = Pkcs11::open(Pkcs11Config {
                module: "/nonexistent/libpkcs11.so".into(),
                ..config("kek-1", PIN)
            })
            .unwrap_err();
            assert!(
                matches!(no_module, Error::Unreachable { .. }),
                "{no_module}"
            );
            for err in [&wrong_pin, &no_kek, &no_token, &no_module] {
                let text = format!("{err} {err:?}");
                assert!(!text.contains(PIN) && !text.contains("00000000"), "{text}");
            }

            // A wrapped key whose KEK was taken off the token: refused, naming the KEK.
            make_kek("kek-2");
            let token = token("kek-2");
            let wrapped = runtime()
                .block_on(wrap_identity(&token, IDENTITY, &context()))
                .unwrap();
            let gone = kseal_custody::WrappedIdentity {
                kek_id: "kek-retired".into(),
                ..wrapped
            };
            let err = runtime()
                .block_on(unwrap_identity(&token, &gone, &context()))
                .unwrap_err();
            assert!(err.to_string().contains("kek-retired"), "{err}");
        },
    );
}

#[test]
fn another_tokens_kek_of_the_same_label_does_not_open_the_key() {
    with_token(
        "another_tokens_kek_of_the_same_label_does_not_open_the_key",
        |_| {
            make_kek("kek-1");
            let wrapped = runtime()
                .block_on(wrap_identity(&token("kek-1"), IDENTITY, &context()))
                .unwrap();
            // The HSM's key replaced by another of the same label (a restore onto the
            // wrong HSM): the data key does not unwrap.
            let session = admin_session();
            for kek in session
                .find_objects(&[Attribute::Label(b"kek-1".to_vec())])
                .unwrap()
            {
                session.destroy_object(kek).unwrap();
            }
            make_kek("kek-1");
            let err = runtime()
                .block_on(unwrap_identity(&token("kek-1"), &wrapped, &context()))
                .unwrap_err();
            assert!(matches!(err, Error::Refused { .. }), "{err}");
        },
    );
}
