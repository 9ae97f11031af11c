//! Interoperability with the RFC 9964 examples (Appendix A): the all-zeros-seed ML-DSA-44
//! key must have the same public key, COSE Key Thumbprint and JWK Thumbprint as there, and
//! the Appendix A.2 COSE_Sign1 must verify under it with pqwrap's ML-DSA (empty context,
//! RFC 9052 Sig_structure).
// A failed unwrap in a test is a failed test, with its message.
#![allow(clippy::unwrap_used)]

mod token_support;

use base64ct::{Base64UrlUnpadded, Encoding};
use pqwrap_core::token::keys::hex_lower;
use pqwrap_core::token::{Algorithm, PublicKey, SigningKey};
use token_support::*;

/// RFC 9964 Appendix A.2: COSE_Sign1 over "hello post quantum signatures" by the all-zeros
/// ML-DSA-44 key, protected header {1: -48, 4: kid}.
const A2_SIGN1: &[&str] = &[
    "d2845827a201382f045820b8969ab4b37da9f0684e42647eb8a0be8b5b661ebf5d76f0583bf5b8d3a8059aa0581d6865",
    "6c6c6f20706f7374207175616e74756d207369676e6174757265735909742657237b7520fd4cb8803f69a6e4ab613f48",
    "16420cd38e6474e548a370c6f0a18851ce8b7bb1b43c658b795303d0f22d23aad9afc7077877ab77d7cc92947bcf800e",
    "09626d7ceb809f74d2dc435200b272ecc92a993901087a42eaeaa6b9009df00f26055e6032ccca2995bf9c455e93c95a",
    "db9dda970ba07d778a9b4950169b289a86ec272bb810f9506b960941fa4ac804de49cb80f9bd54f51adef76670c06f94",
    "bf948ad7675ab28aa3254944753aac0cdbd8594752a438552e846fb476be3e31df0c91222db5e5d70bddb05b624a7810",
    "3654d4e9ec514f6be91cfe8fa3b8529b2659a89e70227f35d0059362ed51c7523bf4a8ca7ceb0da6216bea77576548cd",
    "98f5ad6f87326facc8b308debce4461f1f2c4b190bd4950eec52cb66da70c9913e8a476826a0ea05edd8f2d3ca53e485",
    "ffcebc4e7ae33aeeb1d8dc3ee6b8d09cea138377ceeaed4fef57d868c16311e18c64b9df501791a6142085083850b3ad",
    "2e74901298c09b7fc4d87a660031e955b39cf9e6fbbe3cae5b36360f6b61f904771d55d542fbc68be5468738f5b8c44e",
    "b624da535a112c0266f79b9ae7ac996feab2c5874c65f59a72bf671b568d06e57b89f6fa168f48050f869e9fe0b95490",
    "487597e1746d7f54ef04eca32710bd4655a2269fd9afdfa0c7630c09ad59273d5d76f6bc026b623e5fee4fe3978efb4f",
    "dc5f905d8a346259cad9cd8ad826cdea818fcca6804bd78ddddb70d46d723ec63980fe7bb2eb8dab84692cb6f6a560eb",
    "80381dc0d5ded38d1de896772702f99637f6b9a9b207be86e2a401187bb250f68230f7840ecf9787bb6073e2e29f1287",
    "cd73bdf1dae8302fcf23f942305c4c9807aba037af66f8b278003c98a30084f9ad3f2e4c4b31eb1b3f20170c70f0310f",
    "71932a4e0065a2bd79eedc70e59f9cc261aed96fd7ebec86be2490789ad0dffc76f4cccc28ed675a769edf9f8d6e9fd7",
    "8d59393687fb19b641626f70bbed7c6496a3a1393be6751f533e7af8f20f9ef32c7b58b231feb4231aa407ecf5e0be79",
    "21c449a537ab58871b4cef2f8b1212b189ddc9e207b0ebe8135be534b30f25ce0aa33371a94971da4b6b78bb2cb70803",
    "5b539f3706348d1f6ef0e2ab9c741f1ffce5bd34c20c2ded6272c583188d2f48404cbd10f6aa759fecb1e5b87c755573",
    "db0d86ef17fecd7231179f47a19b0bcdafadad9a8b20dfe1d2792cc2d78d13c76722739d6c31563bc938fb07a0bc5d96",
    "d3a4e852141815b526ac74fa210c48ce1e2ffa3faa682191aea55a476a6cd7e0ab42902180b1444a2e08302c17608b58",
    "31daa4c4008dbb54f0b4ce566c069ed48d4a9c5b542816f3156cde0d7323bb071cccc98ee35672248e873b5907d02a15",
    "3a57e5777c6767fd75e833df46813c2abe44dc6492e8de4487f4fa1d1377d4ae273d28869c6630ba4865e65676d9dc9c",
    "a0998a0082e95c78314d543068f6fd38a27bdbc98f8b5fefa21e704e4bc8ac7ed46ea5c03eb700cf0e549b8a1c50b5d0",
    "51bd7c2588938f7c9f5499e7b95430b1e567a2e36b4a55252829d7fb319c7edab4e19108fa2a784c96ec1027f19f5714",
    "48132b6c8c4441a7a7488ddda530b84ba0221120c95311eab37660b1329a70365117eebbb7e0240cc5052ec723e0121c",
    "2a175053c762b88943ac7b965d10239c4b8f8d39a1a57ace097a1631c7e93c36abc8a085a21a18a14b621cff49369707",
    "891e06e508e41970b26490c8f5c038bcb2e62a72d24591f563c42fed3dfa3539f75dacbc7918919642220a01da483a2c",
    "0413360e424c6cc30dfc502858a57ffdc20d30bb57c1659a7d4beb6794c4675524e813a27e3807547d0bc16e91242d79",
    "25b01f0a8cf03f5c6e867710373ad02e53816f82a21b2c9f359e7d586ec0590c0a1780a6755e1723981ebd866d251e20",
    "a0a5b2dc08e05beb325797aa7c2746596c534964cc751ff341d49e39c8b6f8a903549779189c5732b841abde352eddff",
    "9ffb67f20b9c27d30078994ac96c8250b3428c65a714c05c91c897a18ee58f908557062bd733444a9d73ed89a637c621",
    "43e46e1cb3723c6a8fd2df0d90d03b6cdfb4e6c033f67c51a803b6eaea79e0ecfe4a3b22c5dc951d51683ea716149958",
    "c59ab43f1085d8e5896aa3c8d972d54998d3de2b27c2d67e0059b78dff6f804cd491dfae0308b4c8983ea1c574b4414d",
    "f8ca772fbb60dc49249f8dbab9c43357016893f7a4b2eb28c0a8de635157b717e20ad60d5a52d37e2ebf5b87dcdcccdd",
    "d1f40825d56b948e60015118e8988f6000dd157ce92a0f0ec1d5459890317ee861a0d29f7305331047886e1918b8438d",
    "1df534e685c93f2f11317b000b0bd7da766e5f1d4a0816a7af878be4c8dc8fdd208abd5c7f98aa0e882772387ef5032f",
    "60e71a7c1c630a8eacdde2a7c5e86277b20e1317cd8b9892e8509647d55143dccca07ffdd678d5856eaab93f55df72ff",
    "4c909146de54393aeed095cbd9fc1a24b7f7950cb80eb423ed114cdc21e59593b2a5fcbbdf1613810fd63c8dd45e39bc",
    "5bd02d71328cfea87d2deadda75089ca7d4529e0b5b64fb887fc38cb9531033386255c6a155af95447b2154354e6d163",
    "b752bef91f248b5068f3e620365c8c497cfcbe61930d0cf08387308310f485bfa23c31bf2d01900e801352a388c97212",
    "ef58b6a81f5082f08831433a7ca8c0df910cc462b36d61f532325eeee540547b6c07c738b010daf7384f8cf019757611",
    "01e556e8639848dfd049ee5360bb9b62bb38aef0fc84970dad3e78c0f3413573042abe52805b5aec545bcb43142f5d44",
    "a9c1d2b6cdf3ded20907f02ebc78e78f598beadd0fc1faa676560edffbd7a83b61795bc29b6fbe4c7c6e9097139dbb85",
    "b54a8b446a37f2fd6a7db528f1c5da5fe367823f8fa39adae0bd23196f689059e2de3cfcbaad6bec710464156cd72be7",
    "0d5950075953286feb605f6898746586750e3aef767b0e80136453c1ab388ff5462bfc0316ed78937ea235dd883e9fed",
    "bd66f9060b542272ac9747fe3109a27a89403fc1c2380ccb1e3f199077582aa565fba4621092c5665f2f7803f5ecfdaf",
    "86878ec045a780ea3751bd32333cd02fef8b4eb9386f51fa7a5f3bb81c55fb0de38c905ba4002dadfcc5123bf561bef2",
    "d32c40577dc487736162c69444279d917abd0d2320fb715299c1043defb582a20fec3190a6c0e484360910388889c122",
    "c4a13adc73031a0969e3c1a9008d8467c4c4d59c848d9ca2441ec57b02034fd5872b4cf75185d5fb14e6af1aead0e172",
    "7db42db39877f01d674558f7b59b0e0f10363e3f505d82a7c0c7cadd1618233541424f57596476777d80a6b8dfe6eefc",
    "fd0515196c8e99c3cfd2ebf2020b0c16202b3337484e525657a4b5bec3cad2d4d5d6dd00000000000000000000000e23",
    "2e45",
];

const A_COSE_KID: &str = "b8969ab4b37da9f0684e42647eb8a0be8b5b661ebf5d76f0583bf5b8d3a8059a";
const A_JWK_KID: &str = "T4xl70S7MT6Zeq6r9V9fPJGVn76wfnXJ21-gyo0Gu6o";

#[test]
fn all_zeros_key_matches_rfc9964_thumbprints() {
    let sk = SigningKey::from_seed(Algorithm::MlDsa44, &[0u8; 32]);
    let pk = sk.public_key();
    assert!(hex_lower(pk.as_bytes()).starts_with("ba71f9f64e11baeb58fa9c6fbb6e14e6"));
    assert!(hex_lower(pk.as_bytes()).ends_with("3830546b9dd8db0d"));
    assert_eq!(hex_lower(pk.kid()), A_COSE_KID);
    assert_eq!(
        Base64UrlUnpadded::encode_string(&pk.jwk_thumbprint()),
        A_JWK_KID
    );
    let jwk: serde_json::Value = serde_json::from_str(&pk.to_jwk()).unwrap();
    assert_eq!(jwk["kid"], A_JWK_KID);
    let private: serde_json::Value = serde_json::from_str(&sk.to_jwk_private()).unwrap();
    assert_eq!(
        private["priv"],
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    );
    // A COSE_Key carrying the RFC's kid parses; a wrong kid is refused.
    let with_kid = map(&[
        (int(1), int(7)),
        (int(2), bstr(&hex::decode(A_COSE_KID).unwrap())),
        (int(3), int(-48)),
        (int(-1), bstr(pk.as_bytes())),
    ]);
    assert_eq!(PublicKey::from_cose_key(&with_kid).unwrap(), *pk);
    let wrong = map(&[
        (int(1), int(7)),
        (int(2), bstr(&[0u8; 32])),
        (int(3), int(-48)),
        (int(-1), bstr(pk.as_bytes())),
    ]);
    assert!(PublicKey::from_cose_key(&wrong).is_err());
}

#[test]
fn rfc9964_cose_sign1_example_verifies_with_pqwrap_ml_dsa() {
    let bytes = hex::decode(A2_SIGN1.concat()).unwrap();
    let pk = SigningKey::from_seed(Algorithm::MlDsa44, &[0u8; 32])
        .public_key()
        .clone();
    // Frame: d2 84 58 27 <protected> a0 58 1d <payload> 59 0974 <signature>.
    assert_eq!(&bytes[..4], &[0xd2, 0x84, 0x58, 0x27]);
    let protected = &bytes[4..4 + 0x27];
    assert_eq!(
        protected,
        &map(&[(int(1), int(-48)), (int(4), bstr(pk.kid()))])[..]
    );
    let rest = &bytes[4 + 0x27..];
    assert_eq!(&rest[..3], &[0xa0, 0x58, 0x1d]);
    let payload = &rest[3..3 + 0x1d];
    assert_eq!(payload, b"hello post quantum signatures");
    let sig_part = &rest[3 + 0x1d..];
    assert_eq!(&sig_part[..3], &[0x59, 0x09, 0x74]);
    let sig = &sig_part[3..];
    assert_eq!(sig.len(), 2420);
    let tbs = sig_structure(protected, b"", payload);
    assert!(pk.verify(&tbs, sig));
    let mut bad = tbs.clone();
    *bad.last_mut().unwrap() ^= 1;
    assert!(!pk.verify(&bad, sig));
    // pqwrap's token verifier refuses it: it is not a pqwrap token (no typ).
    let v = pqwrap_core::token::Verifier::new([pk].into_iter().collect(), "x");
    assert!(v.verify(&bytes, NOW).is_err());
}
