//! OCSP client side (RFC 6960): request encoding and response verification.
//!
//! Encoding and decoding use the RustCrypto `x509-ocsp`/`der` crates; signatures are
//! verified with the rustls crypto provider.

use base64::Engine as _;
use const_oid::db::rfc5912::{ID_SHA_1, ID_SHA_256};
use const_oid::db::rfc6960::{ID_PKIX_OCSP_BASIC, ID_PKIX_OCSP_NONCE};
use der::asn1::{Null, ObjectIdentifier, OctetString};
use der::{Decode, Encode};
use rustls::crypto::CryptoProvider;
use sha1::Digest as _;
use x509_cert::ext::Extension;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_ocsp::{
    BasicOcspResponse, CertId, CertStatus, OcspRequest, OcspResponse, OcspResponseStatus, Request,
    ResponderId, TbsRequest, Version,
};

use super::cert::{verify_signature, CertInfo};
use super::config::CertIdHash;
use super::der::{fmt_time, normalize_serial, tag, Reader};

/// What is wrong with an OCSP exchange.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OcspError {
    /// The request could not be encoded.
    #[error("cannot encode the OCSP request: {0}")]
    Encode(String),
    /// The response does not decode.
    #[error("malformed OCSP response: {0}")]
    Malformed(String),
    /// The responder answered with an error status.
    #[error("OCSP responder returned status {0}")]
    ResponderStatus(String),
    /// Not a basic response.
    #[error("OCSP response type is not id-pkix-ocsp-basic")]
    NotBasic,
    /// No usable signer: the responder is neither the issuer nor an authorized delegate.
    #[error("OCSP responder not authorized: {0}")]
    NotAuthorized(String),
    /// The signature does not verify.
    #[error("OCSP response signature does not verify: {0}")]
    BadSignature(String),
    /// No SingleResponse for our CertID.
    #[error("OCSP response holds no status for the requested certificate")]
    CertIdMismatch,
    /// The nonce was not echoed.
    #[error("OCSP response nonce missing or different")]
    NonceMismatch,
    /// `unknown`.
    #[error("OCSP responder does not know the certificate (status unknown)")]
    Unknown,
    /// thisUpdate in the future.
    #[error("OCSP thisUpdate {0} is in the future")]
    NotYetValid(String),
    /// nextUpdate passed.
    #[error("OCSP response is stale: nextUpdate {0} has passed")]
    Stale(String),
}

/// An encoded request and what the answer must match.
#[derive(Debug, Clone)]
pub struct BuiltRequest {
    /// DER of the OCSPRequest.
    pub der: Vec<u8>,
    /// The nonce sent, if any.
    pub nonce: Option<Vec<u8>>,
}

/// A verified status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OcspStatus {
    /// Not revoked.
    Good,
    /// Revoked at `time` (Unix seconds), with an RFC 5280 reason code if given.
    Revoked {
        /// Revocation time.
        time: i64,
        /// CRLReason code.
        reason: Option<u8>,
    },
}

/// A verified, current OCSP answer.
#[derive(Debug, Clone, Copy)]
pub struct OcspAnswer {
    /// The status.
    pub status: OcspStatus,
    /// thisUpdate, Unix seconds.
    pub this_update: i64,
    /// Until when the answer may be used: nextUpdate, or thisUpdate + `max_age` without it.
    pub valid_until: i64,
}

fn cert_id(
    cert: &CertInfo<'_>,
    issuer: &CertInfo<'_>,
    oid: ObjectIdentifier,
) -> Result<CertId, OcspError> {
    let (name_hash, key_hash) =
        hashes(issuer, oid).ok_or(OcspError::Encode(format!("unsupported CertID hash {oid}")))?;
    let enc = |e: der::Error| OcspError::Encode(e.to_string());
    Ok(CertId {
        hash_algorithm: AlgorithmIdentifierOwned {
            oid,
            parameters: Some(Null.into()),
        },
        issuer_name_hash: OctetString::new(name_hash).map_err(enc)?,
        issuer_key_hash: OctetString::new(key_hash).map_err(enc)?,
        serial_number: SerialNumber::from_der(cert.serial_tlv).map_err(enc)?,
    })
}

fn hashes(issuer: &CertInfo<'_>, oid: ObjectIdentifier) -> Option<(Vec<u8>, Vec<u8>)> {
    if oid == ID_SHA_1 {
        Some((
            sha1::Sha1::digest(issuer.subject).to_vec(),
            sha1::Sha1::digest(issuer.public_key).to_vec(),
        ))
    } else if oid == ID_SHA_256 {
        Some((
            sha2::Sha256::digest(issuer.subject).to_vec(),
            sha2::Sha256::digest(issuer.public_key).to_vec(),
        ))
    } else {
        None
    }
}

/// Builds the request for `cert` issued by `issuer`; `nonce` is 16 random bytes or none.
///
/// # Errors
/// [`OcspError::Encode`].
pub fn build_request(
    cert: &CertInfo<'_>,
    issuer: &CertInfo<'_>,
    hash: CertIdHash,
    nonce: Option<[u8; 16]>,
) -> Result<BuiltRequest, OcspError> {
    let oid = match hash {
        CertIdHash::Sha1 => ID_SHA_1,
        CertIdHash::Sha256 => ID_SHA_256,
    };
    let enc = |e: der::Error| OcspError::Encode(e.to_string());
    let request_extensions = match nonce {
        Some(n) => {
            let value = OctetString::new(n.to_vec()).map_err(enc)?;
            Some(vec![Extension {
                extn_id: ID_PKIX_OCSP_NONCE,
                critical: false,
                extn_value: OctetString::new(value.to_der().map_err(enc)?).map_err(enc)?,
            }])
        }
        None => None,
    };
    let req = OcspRequest {
        tbs_request: TbsRequest {
            version: Version::V1,
            requestor_name: None,
            request_list: vec![Request {
                req_cert: cert_id(cert, issuer, oid)?,
                single_request_extensions: None,
            }],
            request_extensions,
        },
        optional_signature: None,
    };
    Ok(BuiltRequest {
        der: req.to_der().map_err(enc)?,
        nonce: nonce.map(|n| n.to_vec()),
    })
}

/// The RFC 5019 GET URL for `req`, if it fits in 255 bytes.
pub fn get_url(base: &str, req: &BuiltRequest) -> Option<String> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(&req.der);
    let enc = b64
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    let url = format!("{}/{}", base.trim_end_matches('/'), enc);
    (url.len() <= 255).then_some(url)
}

/// When and how strictly freshness is judged.
#[derive(Debug, Clone, Copy)]
pub struct Freshness {
    /// The evaluation time, Unix seconds.
    pub now: i64,
    /// Clock-skew allowance, seconds.
    pub skew: i64,
    /// How long an answer without nextUpdate may be used after its thisUpdate, seconds.
    pub max_age: i64,
}

/// Verifies a DER OCSPResponse for `cert`/`issuer` at `now`.
///
/// `at.max_age` bounds the use of an answer without nextUpdate.
///
/// # Errors
/// [`OcspError`] naming the failed check; `unknown` is an error.
pub fn verify_response(
    bytes: &[u8],
    cert: &CertInfo<'_>,
    issuer: &CertInfo<'_>,
    req: &BuiltRequest,
    provider: &CryptoProvider,
    at: Freshness,
) -> Result<OcspAnswer, OcspError> {
    let Freshness { now, skew, max_age } = at;
    let malformed = |e: der::Error| OcspError::Malformed(e.to_string());
    let resp = OcspResponse::from_der(bytes).map_err(malformed)?;
    if resp.response_status != OcspResponseStatus::Successful {
        return Err(OcspError::ResponderStatus(format!(
            "{:?}",
            resp.response_status
        )));
    }
    let rb = resp
        .response_bytes
        .ok_or_else(|| OcspError::Malformed("successful response without responseBytes".into()))?;
    if rb.response_type != ID_PKIX_OCSP_BASIC {
        return Err(OcspError::NotBasic);
    }
    let basic_der = rb.response.as_bytes();
    let basic = BasicOcspResponse::from_der(basic_der).map_err(malformed)?;
    // The exact signed bytes, as received.
    let tbs_raw = {
        let outer = Reader::new(basic_der)
            .expect(tag::SEQUENCE, "BasicOCSPResponse")
            .map_err(|e| OcspError::Malformed(e.to_string()))?;
        Reader::new(outer.value)
            .expect(tag::SEQUENCE, "tbsResponseData")
            .map_err(|e| OcspError::Malformed(e.to_string()))?
            .raw
    };
    let sig_alg_der = basic.signature_algorithm.to_der().map_err(malformed)?;
    let sig_alg = Reader::new(&sig_alg_der)
        .expect(tag::SEQUENCE, "signatureAlgorithm")
        .map_err(|e| OcspError::Malformed(e.to_string()))?
        .value;
    let signature = basic
        .signature
        .as_bytes()
        .ok_or_else(|| OcspError::Malformed("signature BIT STRING has unused bits".into()))?;

    // Candidate signers: the issuer, then certificates in the response.
    let extra: Vec<Vec<u8>> = basic
        .certs
        .iter()
        .flatten()
        .filter_map(|c| c.to_der().ok())
        .collect();
    let extra: Vec<CertInfo<'_>> = extra
        .iter()
        .filter_map(|d| CertInfo::parse(d).ok())
        .collect();
    let rid = &basic.tbs_response_data.responder_id;
    let matches = |c: &CertInfo<'_>| -> bool {
        match rid {
            ResponderId::ByName(n) => n.to_der().is_ok_and(|d| d == c.subject),
            ResponderId::ByKey(h) => sha1::Sha1::digest(c.public_key).as_slice() == h.as_bytes(),
        }
    };
    let signer = if matches(issuer) {
        issuer.clone()
    } else {
        let d = extra.iter().find(|c| matches(c)).ok_or_else(|| {
            OcspError::NotAuthorized(
                "responder ID matches neither the issuer nor a certificate in the response".into(),
            )
        })?;
        if !d.is_issued_by(issuer, provider) {
            return Err(OcspError::NotAuthorized(format!(
                "responder certificate {} is not issued by the certificate's issuer",
                d.subject_string()
            )));
        }
        if !d.ocsp_signing {
            return Err(OcspError::NotAuthorized(format!(
                "responder certificate {} lacks the id-kp-OCSPSigning EKU",
                d.subject_string()
            )));
        }
        if now + skew < d.not_before || now - skew > d.not_after {
            return Err(OcspError::NotAuthorized(format!(
                "responder certificate {} is not valid now",
                d.subject_string()
            )));
        }
        d.clone()
    };
    verify_signature(provider, &signer, sig_alg, tbs_raw, signature)
        .map_err(|e| OcspError::BadSignature(e.to_string()))?;

    if let Some(sent) = &req.nonce {
        let got = basic
            .nonce()
            .map(|n| n.0.as_bytes().to_vec())
            .ok_or(OcspError::NonceMismatch)?;
        if &got != sent {
            return Err(OcspError::NonceMismatch);
        }
    }

    let single = basic
        .tbs_response_data
        .responses
        .iter()
        .find(|s| {
            let id = &s.cert_id;
            normalize_serial(id.serial_number.as_bytes()) == cert.serial
                && hashes(issuer, id.hash_algorithm.oid).is_some_and(|(n, k)| {
                    id.issuer_name_hash.as_bytes() == n && id.issuer_key_hash.as_bytes() == k
                })
        })
        .ok_or(OcspError::CertIdMismatch)?;
    let this_update = gt(&single.this_update);
    let next_update = single.next_update.as_ref().map(gt);
    if this_update > now + skew {
        return Err(OcspError::NotYetValid(fmt_time(this_update)));
    }
    let valid_until = next_update.unwrap_or(this_update + max_age);
    if now > valid_until + skew {
        return Err(OcspError::Stale(fmt_time(valid_until)));
    }
    let status = match &single.cert_status {
        CertStatus::Good(_) => OcspStatus::Good,
        CertStatus::Revoked(info) => OcspStatus::Revoked {
            time: gt(&info.revocation_time),
            reason: info.revocation_reason.map(|r| r as u8),
        },
        CertStatus::Unknown(_) => return Err(OcspError::Unknown),
    };
    Ok(OcspAnswer {
        status,
        this_update,
        valid_until,
    })
}

fn gt(t: &x509_ocsp::OcspGeneralizedTime) -> i64 {
    i64::try_from(t.0.to_unix_duration().as_secs()).unwrap_or(i64::MAX)
}
