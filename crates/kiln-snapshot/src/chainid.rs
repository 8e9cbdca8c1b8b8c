//! OCI chain ids: the identity of a layer *stack*, so a snapshot keyed by one can be shared
//! by every image whose bottom layers are the same.
//!
//! `chainid(L0) = diffid(L0)`, `chainid(Ln) = sha256(chainid(Ln-1) + " " + diffid(Ln))`
//! (image-spec config.md, "Layer ChainID").

use kiln_oci::Digest;

/// The chain id of `diff_id` stacked on the layer stack `parent` (None: bottom layer).
pub fn next_chain_id(parent: Option<&Digest>, diff_id: &Digest) -> Digest {
    match parent {
        None => diff_id.clone(),
        Some(p) => Digest::of_bytes(format!("{p} {diff_id}").as_bytes()),
    }
}

/// The chain id of the whole stack `diff_ids` (bottom-most first); None when empty.
pub fn chain_id(diff_ids: &[Digest]) -> Option<Digest> {
    chain_ids(diff_ids).pop()
}

/// The chain id of every prefix of `diff_ids`: element n is `chainid(L0..=Ln)`.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = next_chain_id(out.last(), d);
        out.push(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Digest {
        Digest::parse(s).unwrap()
    }

    #[test]
    fn golden_chain_ids() {
        // Values computed independently with `printf '%s %s' A B | sha256sum`.
        let a = d("sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4");
        let b = d("sha256:bf3b0c5a7ee8ccb5b5e34ac5d4f9d6d1cc4c2c87d2a4e4f1bd36a11c39a0b9f0");
        assert_eq!(chain_id(&[]), None);
        assert_eq!(chain_id(std::slice::from_ref(&a)), Some(a.clone()));
        let ids = chain_ids(&[a.clone(), b.clone(), a.clone()]);
        assert_eq!(ids[0], a);
        assert_eq!(ids[1].to_string(), GOLDEN_AB);
        assert_eq!(ids[2].to_string(), GOLDEN_ABA);
        assert_eq!(next_chain_id(Some(&ids[1]), &a), ids[2]);
    }

    const GOLDEN_AB: &str =
        "sha256:3f7adc667ef77c78289f7e51829f5f7dce6994c5b51055a9f5dfc1f9ea9ebde6";
    const GOLDEN_ABA: &str =
        "sha256:79d1710cee0174c93b8208347bdb8bee663f1ce84c5abda1619f5fcc6ca8d8db";
}
