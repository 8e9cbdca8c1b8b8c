//! Media types kiln reads and writes: OCI image-spec and Docker schema2.

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const OCI_LAYER_NONDIST_GZIP: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
pub const DOCKER_FOREIGN_LAYER: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

/// How a layer blob is compressed, derived from its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// What a manifest-level media type denotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    Manifest,
    Index,
}

pub fn manifest_kind(media_type: &str) -> Option<ManifestKind> {
    match media_type {
        OCI_MANIFEST | DOCKER_MANIFEST => Some(ManifestKind::Manifest),
        OCI_INDEX | DOCKER_MANIFEST_LIST => Some(ManifestKind::Index),
        _ => None,
    }
}

pub fn is_config(media_type: &str) -> bool {
    matches!(media_type, OCI_CONFIG | DOCKER_CONFIG)
}

/// The compression of a layer media type, or `None` if it is not a layer type kiln knows.
pub fn layer_compression(media_type: &str) -> Option<Compression> {
    match media_type {
        OCI_LAYER_TAR
        | DOCKER_LAYER_TAR
        | "application/vnd.oci.image.layer.nondistributable.v1.tar" => Some(Compression::None),
        OCI_LAYER_GZIP | DOCKER_LAYER_GZIP | OCI_LAYER_NONDIST_GZIP | DOCKER_FOREIGN_LAYER => {
            Some(Compression::Gzip)
        }
        OCI_LAYER_ZSTD | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => {
            Some(Compression::Zstd)
        }
        _ => None,
    }
}

/// The OCI layer media type for a compression.
pub fn oci_layer_type(c: Compression) -> &'static str {
    match c {
        Compression::None => OCI_LAYER_TAR,
        Compression::Gzip => OCI_LAYER_GZIP,
        Compression::Zstd => OCI_LAYER_ZSTD,
    }
}

/// The Docker schema2 counterpart of an OCI media type (for docker-archive output).
pub fn to_docker(media_type: &str) -> &str {
    match media_type {
        OCI_MANIFEST => DOCKER_MANIFEST,
        OCI_INDEX => DOCKER_MANIFEST_LIST,
        OCI_CONFIG => DOCKER_CONFIG,
        OCI_LAYER_GZIP => DOCKER_LAYER_GZIP,
        OCI_LAYER_TAR => DOCKER_LAYER_TAR,
        other => other,
    }
}

/// The OCI counterpart of a Docker schema2 media type.
pub fn to_oci(media_type: &str) -> &str {
    match media_type {
        DOCKER_MANIFEST => OCI_MANIFEST,
        DOCKER_MANIFEST_LIST => OCI_INDEX,
        DOCKER_CONFIG => OCI_CONFIG,
        DOCKER_LAYER_GZIP => OCI_LAYER_GZIP,
        DOCKER_LAYER_TAR => OCI_LAYER_TAR,
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_types() {
        assert_eq!(
            layer_compression(DOCKER_LAYER_GZIP),
            Some(Compression::Gzip)
        );
        assert_eq!(layer_compression(OCI_LAYER_ZSTD), Some(Compression::Zstd));
        assert_eq!(layer_compression(OCI_LAYER_TAR), Some(Compression::None));
        assert_eq!(layer_compression(OCI_CONFIG), None);
        for t in [
            OCI_MANIFEST,
            OCI_INDEX,
            OCI_CONFIG,
            OCI_LAYER_GZIP,
            OCI_LAYER_TAR,
        ] {
            assert_eq!(to_oci(to_docker(t)), t);
        }
    }
}
