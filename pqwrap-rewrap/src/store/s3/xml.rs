//! The XML documents of the S3 API that the store reads and writes. Parsing is lenient about
//! elements it does not use and strict about those it does (a missing key or ETag makes the
//! document unreadable, never a default).

use serde::Deserialize;

/// An S3 `<Error>` document.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ApiError {
    /// `NoSuchKey`, `SlowDown`, `PreconditionFailed`, ...
    #[serde(rename = "Code", default)]
    pub code: String,
    /// For people.
    #[serde(rename = "Message", default)]
    pub message: String,
}

impl ApiError {
    /// Codes that mean "try again".
    pub fn retryable(&self) -> bool {
        matches!(
            self.code.as_str(),
            "SlowDown" | "InternalError" | "ServiceUnavailable" | "RequestTimeout" | "Throttling"
        )
    }
}

/// The error document in `body`, if it is one.
pub fn error_in(body: &[u8]) -> Option<ApiError> {
    let text = std::str::from_utf8(body).ok()?;
    if !text.contains("<Error") {
        return None;
    }
    quick_xml::de::from_str::<ApiError>(text).ok()
}

fn parse<'de, T: Deserialize<'de>>(body: &'de [u8]) -> Option<T> {
    quick_xml::de::from_str(std::str::from_utf8(body).ok()?).ok()
}

/// One object of a listing.
#[derive(Clone, Debug, Deserialize)]
pub struct Object {
    /// Its key.
    #[serde(rename = "Key")]
    pub key: String,
    /// Its size.
    #[serde(rename = "Size")]
    pub size: u64,
    /// Its ETag.
    #[serde(rename = "ETag", default)]
    pub etag: Option<String>,
}

/// A page of ListObjectsV2.
#[derive(Debug, Deserialize)]
pub struct ObjectsPage {
    /// The objects.
    #[serde(rename = "Contents", default)]
    pub objects: Vec<Object>,
    /// Whether more pages follow.
    #[serde(rename = "IsTruncated", default)]
    pub truncated: bool,
    /// The token for the next page.
    #[serde(rename = "NextContinuationToken", default)]
    pub next: Option<String>,
}

/// Parses a ListBucketResult.
pub fn objects_page(body: &[u8]) -> Option<ObjectsPage> {
    parse(body)
}

/// One version (or delete marker) of ListObjectVersions.
#[derive(Clone, Debug, Deserialize)]
pub struct Version {
    /// Its key.
    #[serde(rename = "Key")]
    pub key: String,
    /// Its id.
    #[serde(rename = "VersionId")]
    pub version: String,
    /// Whether it is the current version.
    #[serde(rename = "IsLatest", default)]
    pub latest: bool,
    /// Its size (0 for delete markers).
    #[serde(rename = "Size", default)]
    pub size: u64,
    /// Its ETag (none for delete markers).
    #[serde(rename = "ETag", default)]
    pub etag: Option<String>,
}

/// A page of ListObjectVersions.
#[derive(Debug, Deserialize)]
pub struct VersionsPage {
    /// Versions holding bytes.
    #[serde(rename = "Version", default)]
    pub versions: Vec<Version>,
    /// Delete markers.
    #[serde(rename = "DeleteMarker", default)]
    pub delete_markers: Vec<Version>,
    /// Whether more pages follow.
    #[serde(rename = "IsTruncated", default)]
    pub truncated: bool,
    /// Where the next page starts.
    #[serde(rename = "NextKeyMarker", default)]
    pub next_key_marker: Option<String>,
    /// Where the next page starts, within a key.
    #[serde(rename = "NextVersionIdMarker", default)]
    pub next_version_marker: Option<String>,
}

/// Parses a ListVersionsResult.
pub fn versions_page(body: &[u8]) -> Option<VersionsPage> {
    parse(body)
}

/// A multipart upload in progress.
#[derive(Clone, Debug, Deserialize)]
pub struct Upload {
    /// The key it will create.
    #[serde(rename = "Key")]
    pub key: String,
    /// Its id.
    #[serde(rename = "UploadId")]
    pub id: String,
    /// When it was started (ISO 8601, the server's clock).
    #[serde(rename = "Initiated", default)]
    pub initiated: Option<String>,
}

/// A page of ListMultipartUploads.
#[derive(Debug, Deserialize)]
pub struct UploadsPage {
    /// The uploads.
    #[serde(rename = "Upload", default)]
    pub uploads: Vec<Upload>,
    /// Whether more pages follow.
    #[serde(rename = "IsTruncated", default)]
    pub truncated: bool,
    /// Where the next page starts.
    #[serde(rename = "NextKeyMarker", default)]
    pub next_key_marker: Option<String>,
    /// Where the next page starts, within a key.
    #[serde(rename = "NextUploadIdMarker", default)]
    pub next_upload_id_marker: Option<String>,
}

/// Parses a ListMultipartUploadsResult.
pub fn uploads_page(body: &[u8]) -> Option<UploadsPage> {
    parse(body)
}

#[derive(Deserialize)]
struct Initiated {
    #[serde(rename = "UploadId")]
    id: String,
}

/// The `UploadId` of an InitiateMultipartUploadResult.
pub fn upload_id(body: &[u8]) -> Option<String> {
    parse::<Initiated>(body)
        .map(|i| i.id)
        .filter(|i| !i.is_empty())
}

#[derive(Deserialize)]
struct WithEtag {
    #[serde(rename = "ETag")]
    etag: String,
}

/// The `ETag` of a CopyPartResult.
pub fn copy_part_etag(body: &[u8]) -> Option<String> {
    parse::<WithEtag>(body)
        .map(|c| c.etag)
        .filter(|e| !e.is_empty())
}

/// The `ETag` of a CompleteMultipartUploadResult.
pub fn complete_etag(body: &[u8]) -> Option<String> {
    parse::<WithEtag>(body)
        .map(|c| c.etag)
        .filter(|e| !e.is_empty())
}

/// The body of CompleteMultipartUpload.
pub fn complete_body(parts: &[(u32, String)]) -> String {
    let mut s = String::from("<CompleteMultipartUpload>");
    for (n, etag) in parts {
        s.push_str(&format!(
            "<Part><PartNumber>{n}</PartNumber><ETag>{}</ETag></Part>",
            escape(etag)
        ));
    }
    s.push_str("</CompleteMultipartUpload>");
    s
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_and_errors_parse() {
        let page = objects_page(
            br#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix></Prefix>
<KeyCount>2</KeyCount><IsTruncated>true</IsTruncated><NextContinuationToken>tok</NextContinuationToken>
<Contents><Key>a &amp; b.age</Key><Size>10</Size><ETag>&quot;x&quot;</ETag></Contents>
<Contents><Key>c</Key><Size>0</Size></Contents></ListBucketResult>"#,
        )
        .unwrap();
        assert_eq!(page.objects.len(), 2);
        assert_eq!(page.objects[0].key, "a & b.age");
        assert_eq!(page.objects[0].etag.as_deref(), Some("\"x\""));
        assert!(page.truncated);
        assert_eq!(page.next.as_deref(), Some("tok"));
        let empty =
            objects_page(b"<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>")
                .unwrap();
        assert!(empty.objects.is_empty());

        let v = versions_page(
            br#"<ListVersionsResult><IsTruncated>false</IsTruncated>
<Version><Key>k</Key><VersionId>v2</VersionId><IsLatest>true</IsLatest><Size>5</Size><ETag>"e"</ETag></Version>
<DeleteMarker><Key>k</Key><VersionId>v3</VersionId><IsLatest>false</IsLatest></DeleteMarker>
<Version><Key>k</Key><VersionId>v1</VersionId><IsLatest>false</IsLatest><Size>5</Size><ETag>"d"</ETag></Version>
</ListVersionsResult>"#,
        )
        .unwrap();
        assert_eq!(v.versions.len(), 2);
        assert_eq!(v.delete_markers.len(), 1);
        assert!(!v.versions[1].latest);

        let u = uploads_page(
            br#"<ListMultipartUploadsResult><IsTruncated>false</IsTruncated>
<Upload><Key>k</Key><UploadId>u1</UploadId><Initiated>2026-12-01T22:00:00.000Z</Initiated></Upload>
</ListMultipartUploadsResult>"#,
        )
        .unwrap();
        assert_eq!(u.uploads[0].id, "u1");

        let e = error_in(
            b"<?xml version=\"1.0\"?><Error><Code>SlowDown</Code><Message>m</Message></Error>",
        )
        .unwrap();
        assert!(e.retryable());
        assert!(error_in(b"<ListBucketResult/>").is_none());
        assert_eq!(
            upload_id(b"<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><UploadId>id-1</UploadId></InitiateMultipartUploadResult>").as_deref(),
            Some("id-1")
        );
        assert!(
            upload_id(b"<InitiateMultipartUploadResult></InitiateMultipartUploadResult>").is_none()
        );
        assert_eq!(
            complete_body(&[(1, "\"a\"".into())]),
            "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>&quot;a&quot;</ETag></Part></CompleteMultipartUpload>"
        );
    }
}
