//! The server half of SCRAM-SHA-256 (RFC 5802/7677) as PostgreSQL speaks it.
//!
//! Hand-written because no maintained crate offers the server side apart from
//! a whole server framework (pgwire's lives inside its server API, which we
//! don't use). The client half, for logging in upstream, is postgres-protocol's.
//! Verifiers are computed once at start-up with postgres-protocol's
//! `scram_sha_256`, so agent passwords are not kept in plain text for auth.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use thiserror::Error;

pub const MECHANISM: &str = "SCRAM-SHA-256";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ScramError {
    #[error("malformed SCRAM message")]
    Malformed,
    #[error("channel binding is not supported by sqlgate")]
    ChannelBinding,
    #[error("SCRAM nonce mismatch")]
    Nonce,
    #[error("password authentication failed")]
    BadProof,
}

/// What the server stores for one login: never the password itself.
#[derive(Clone)]
pub struct Verifier {
    iterations: u32,
    salt: Vec<u8>,
    stored_key: [u8; 32],
    server_key: [u8; 32],
}

impl Verifier {
    pub fn from_password(password: &str) -> Verifier {
        // Format: SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>
        let s = postgres_protocol::password::scram_sha_256(password.as_bytes());
        Verifier::parse(&s).expect("postgres-protocol produces well-formed verifiers")
    }

    fn parse(s: &str) -> Option<Verifier> {
        let rest = s.strip_prefix("SCRAM-SHA-256$")?;
        let (iter_salt, keys) = rest.split_once('$')?;
        let (iter, salt) = iter_salt.split_once(':')?;
        let (stored, server) = keys.split_once(':')?;
        Some(Verifier {
            iterations: iter.parse().ok()?,
            salt: B64.decode(salt).ok()?,
            stored_key: B64.decode(stored).ok()?.try_into().ok()?,
            server_key: B64.decode(server).ok()?.try_into().ok()?,
        })
    }

    /// A verifier no password matches, with a salt derived from `name` so that
    /// probing unknown names looks like probing known ones.
    pub fn decoy(name: &str, secret: &[u8; 32]) -> Verifier {
        let mut salt = hmac(secret, name.as_bytes()).to_vec();
        salt.truncate(16);
        let mut stored_key = hmac(secret, b"stored");
        stored_key[0] ^= 0xff;
        Verifier {
            iterations: 4096,
            salt,
            stored_key,
            server_key: hmac(secret, b"server"),
        }
    }
}

/// One exchange, from the client's first message to the server's final one.
pub struct Exchange {
    verifier: Verifier,
    client_first_bare: String,
    server_first: String,
    nonce: String,
    gs2_header: String,
}

impl Exchange {
    /// Takes the client-first message; returns the exchange and the server-first message.
    pub fn start(
        verifier: Verifier,
        client_first: &[u8],
    ) -> Result<(Exchange, String), ScramError> {
        let msg = std::str::from_utf8(client_first).map_err(|_| ScramError::Malformed)?;
        // gs2-header: cbind-flag "," [authzid] ","
        let (flag, rest) = msg.split_once(',').ok_or(ScramError::Malformed)?;
        match flag {
            "n" | "y" => {}
            f if f.starts_with("p=") => return Err(ScramError::ChannelBinding),
            _ => return Err(ScramError::Malformed),
        }
        let (authzid, bare) = rest.split_once(',').ok_or(ScramError::Malformed)?;
        if !authzid.is_empty() {
            return Err(ScramError::Malformed);
        }
        let gs2_header = format!("{flag},{authzid},");
        // PostgreSQL ignores n= (the user comes from the startup packet).
        let client_nonce = bare
            .split(',')
            .find_map(|a| a.strip_prefix("r="))
            .filter(|n| !n.is_empty() && n.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b','))
            .ok_or(ScramError::Malformed)?;
        let mut server_nonce = [0u8; 18];
        rand::fill(&mut server_nonce);
        let nonce = format!("{client_nonce}{}", B64.encode(server_nonce));
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&verifier.salt),
            verifier.iterations
        );
        Ok((
            Exchange {
                verifier,
                client_first_bare: bare.to_owned(),
                server_first: server_first.clone(),
                nonce,
                gs2_header,
            },
            server_first,
        ))
    }

    /// Checks the client-final message; returns the server-final message.
    pub fn finish(self, client_final: &[u8]) -> Result<String, ScramError> {
        let msg = std::str::from_utf8(client_final).map_err(|_| ScramError::Malformed)?;
        let (without_proof, proof) = msg.rsplit_once(",p=").ok_or(ScramError::Malformed)?;
        let mut cbind = None;
        let mut nonce = None;
        for attr in without_proof.split(',') {
            if let Some(v) = attr.strip_prefix("c=") {
                cbind = Some(v);
            } else if let Some(v) = attr.strip_prefix("r=") {
                nonce = Some(v);
            }
        }
        let cbind = B64
            .decode(cbind.ok_or(ScramError::Malformed)?)
            .map_err(|_| ScramError::Malformed)?;
        if cbind != self.gs2_header.as_bytes() {
            return Err(ScramError::ChannelBinding);
        }
        if nonce != Some(self.nonce.as_str()) {
            return Err(ScramError::Nonce);
        }
        let proof: [u8; 32] = B64
            .decode(proof)
            .map_err(|_| ScramError::Malformed)?
            .try_into()
            .map_err(|_| ScramError::Malformed)?;
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, self.server_first, without_proof
        );
        let client_signature = hmac(&self.verifier.stored_key, auth_message.as_bytes());
        let mut client_key = [0u8; 32];
        for i in 0..32 {
            client_key[i] = proof[i] ^ client_signature[i];
        }
        let candidate: [u8; 32] = Sha256::digest(client_key).into();
        if !bool::from(candidate.ct_eq(&self.verifier.stored_key)) {
            return Err(ScramError::BadProof);
        }
        let server_signature = hmac(&self.verifier.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)))
    }
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data);
    m.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

    fn run(server_pw: &str, client_pw: &str) -> Result<(), ScramError> {
        let v = Verifier::from_password(server_pw);
        let mut client = ScramSha256::new(client_pw.as_bytes(), ChannelBinding::unsupported());
        let (ex, server_first) = Exchange::start(v, client.message())?;
        client.update(server_first.as_bytes()).unwrap();
        let server_final = ex.finish(client.message())?;
        client.finish(server_final.as_bytes()).unwrap();
        Ok(())
    }

    #[test]
    fn exchanges_with_the_real_client() {
        assert_eq!(run("s3cret", "s3cret"), Ok(()));
        assert_eq!(run("s3cret", "wrong"), Err(ScramError::BadProof));
    }

    #[test]
    fn rejects_garbage_and_binding() {
        let v = Verifier::from_password("x");
        assert!(Exchange::start(v.clone(), b"garbage").is_err());
        assert_eq!(
            Exchange::start(v.clone(), b"p=tls-server-end-point,,n=,r=abc").err(),
            Some(ScramError::ChannelBinding)
        );
        let (ex, _) = Exchange::start(v, b"n,,n=,r=abc").unwrap();
        assert!(ex.finish(b"c=biws,r=abc,p=AAAA").is_err());
        let d = Verifier::decoy("nobody", &[1; 32]);
        let mut client = ScramSha256::new(b"x", ChannelBinding::unsupported());
        let (ex, sf) = Exchange::start(d, client.message()).unwrap();
        client.update(sf.as_bytes()).unwrap();
        assert_eq!(
            ex.finish(client.message()).err(),
            Some(ScramError::BadProof)
        );
    }
}
