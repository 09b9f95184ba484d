//! `kseal-test-hsm make-kek MODULE TOKEN PIN LABEL`: what an HSM administrator's tool
//! does before key custody is turned on: an AES-256 key on the token, sensitive and never
//! extractable. The custody tests run it with `SOFTHSM2_CONF` pointing at their token.

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [command, module, token, pin, label] = args.as_slice() else {
        anyhow::bail!("usage: kseal-test-hsm make-kek MODULE TOKEN PIN LABEL");
    };
    anyhow::ensure!(command == "make-kek", "unknown command {command:?}");
    let module = Pkcs11::new(module)?;
    module.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))?;
    let slot = module
        .get_slots_with_token()?
        .into_iter()
        .find(|s| {
            module
                .get_token_info(*s)
                .is_ok_and(|t| t.label().trim_end() == token)
        })
        .ok_or_else(|| anyhow::anyhow!("no token {token:?}"))?;
    let session = module.open_rw_session(slot)?;
    session.login(UserType::User, Some(&AuthPin::from(pin.clone())))?;
    session.generate_key(
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
    )?;
    Ok(())
}
