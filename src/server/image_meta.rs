//! Strips the metadata of uploaded images that can tell where, when and
//! with what a photo was taken: EXIF (GPS position, camera serial numbers,
//! time), XMP, IPTC and free-text chunks. A phone photo sent in a chat or
//! set as an avatar would otherwise publish the sender's home address to
//! whoever sees it.
//!
//! Byte-level, without an image decoder: the pixels are never decoded or
//! re-encoded (no quality loss, no decoder attack surface, no heavy
//! dependency); only the container's segments or chunks are walked and the
//! metadata ones left out. Input is untrusted, so every length is checked
//! against what is actually there: truncated or malformed input gives an
//! [`ImageMetaError`], never a panic, and never a partly stripped image.
//!
//! - **JPEG**: APP1 (Exif, XMP), APP13 (Photoshop/IPTC), COM and the other
//!   vendor APPn segments go; APP0 (JFIF), APP2 `ICC_PROFILE` (colours) and
//!   APP14 `Adobe` (colour transform) stay. The EXIF orientation, the one
//!   EXIF field that changes how the picture looks, is kept in a minimal
//!   EXIF segment of its own (a phone's portrait photo would otherwise show
//!   sideways). Entropy-coded scan data is skipped correctly (stuffed
//!   `FF 00` and restart markers), so segments between progressive scans
//!   are walked too, and everything after EOI (where phones append extra
//!   "multi-picture" images with EXIF of their own) is dropped.
//! - **PNG**: `eXIf`, `tEXt`, `iTXt` and `zTXt` chunks go; bytes after
//!   `IEND` are dropped.
//! - **WebP**: `EXIF` and `XMP ` chunks go; the RIFF size and the VP8X
//!   EXIF/XMP flags are fixed to match.
//! - **GIF** is passed through: it has no EXIF, and browsers ignore its
//!   comment and application extensions.

use std::borrow::Cow;

/// Why an image was refused: its container structure does not hold
/// together, so it cannot be stripped safely.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ImageMetaError {
    #[error("the {0} image is truncated")]
    Truncated(&'static str),
    #[error("the {format} image is malformed: {what}")]
    Malformed { format: &'static str, what: &'static str },
}

const JPEG: &str = "JPEG";
const PNG: &str = "PNG";
const WEBP: &str = "WebP";

fn malformed(format: &'static str, what: &'static str) -> ImageMetaError {
    ImageMetaError::Malformed { format, what }
}

/// `data` (of the sniffed `content_type`) without its location- and
/// camera-identifying metadata. Types without such metadata (GIF) and
/// unknown types come back borrowed, unchanged.
pub fn strip_metadata<'a>(content_type: &str, data: &'a [u8]) -> Result<Cow<'a, [u8]>, ImageMetaError> {
    match content_type {
        "image/jpeg" => strip_jpeg(data).map(Cow::Owned),
        "image/png" => strip_png(data).map(Cow::Owned),
        "image/webp" => strip_webp(data).map(Cow::Owned),
        _ => Ok(Cow::Borrowed(data)),
    }
}

fn be16(data: &[u8], at: usize) -> Option<u16> {
    let b = data.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

fn be32(data: &[u8], at: usize) -> Option<u32> {
    let b = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn le32(data: &[u8], at: usize) -> Option<u32> {
    let b = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

// ---------------------------------------------------------------- JPEG

const EOI: u8 = 0xD9;
const SOS: u8 = 0xDA;
const APP0: u8 = 0xE0;
const APP1: u8 = 0xE1;

/// Whether a JPEG marker segment is kept: image data and tables always,
/// application segments only when they affect how the pixels look.
fn keep_jpeg_segment(marker: u8, payload: &[u8]) -> bool {
    match marker {
        APP0 => true,
        0xE2 => payload.starts_with(b"ICC_PROFILE\0"),
        0xEE => payload.starts_with(b"Adobe"),
        // APP1 (Exif, XMP), APP3–APP13 (IPTC, vendor data), APP15, COM.
        0xE1 | 0xE3..=0xED | 0xEF | 0xFE => false,
        _ => true,
    }
}

fn strip_jpeg(data: &[u8]) -> Result<Vec<u8>, ImageMetaError> {
    if !data.starts_with(&[0xFF, 0xD8]) {
        return Err(malformed(JPEG, "no start-of-image marker"));
    }
    let mut out = Vec::with_capacity(data.len());
    out.extend_from_slice(&[0xFF, 0xD8]);
    // Where a kept orientation goes: after SOI and the JFIF APP0 segments,
    // which must come first.
    let mut exif_at = out.len();
    let mut only_app0_so_far = true;
    let mut orientation = None;
    let mut seen_sos = false;
    let mut pos = 2;
    loop {
        let Some(&byte) = data.get(pos) else {
            // Scan data that simply stops (no EOI) is shown by browsers as far
            // as it goes, and everything before it was walked: keep it.
            // Without a scan there is no image at all.
            if seen_sos {
                break;
            }
            return Err(ImageMetaError::Truncated(JPEG));
        };
        if byte != 0xFF {
            return Err(malformed(JPEG, "expected a marker"));
        }
        // Any number of 0xFF fill bytes may precede the marker code.
        while data.get(pos) == Some(&0xFF) {
            pos += 1;
        }
        let marker = *data.get(pos).ok_or(ImageMetaError::Truncated(JPEG))?;
        pos += 1;
        match marker {
            EOI => {
                out.extend_from_slice(&[0xFF, EOI]);
                break;
            }
            0x00 | 0xD8 => return Err(malformed(JPEG, "unexpected marker")),
            // Standalone markers carry no length.
            0x01 | 0xD0..=0xD7 => {
                out.extend_from_slice(&[0xFF, marker]);
                continue;
            }
            _ => {}
        }
        let len = usize::from(be16(data, pos).ok_or(ImageMetaError::Truncated(JPEG))?);
        if len < 2 {
            return Err(malformed(JPEG, "segment length below 2"));
        }
        let end = pos + len;
        let segment = data.get(pos..end).ok_or(ImageMetaError::Truncated(JPEG))?;
        let payload = &segment[2..];
        if marker == APP1 && orientation.is_none() {
            orientation = exif_orientation(payload);
        }
        if keep_jpeg_segment(marker, payload) {
            out.extend_from_slice(&[0xFF, marker]);
            out.extend_from_slice(segment);
            if marker == APP0 && only_app0_so_far {
                exif_at = out.len();
            }
        }
        only_app0_so_far &= marker == APP0;
        pos = end;
        if marker == SOS {
            seen_sos = true;
            let scan_end = entropy_coded_end(data, pos);
            out.extend_from_slice(&data[pos..scan_end]);
            pos = scan_end;
        }
    }
    if let Some(o) = orientation.filter(|&o| o != 1) {
        out.splice(exif_at..exif_at, orientation_segment(o));
    }
    Ok(out)
}

/// Where the entropy-coded data starting at `from` ends: at the first
/// marker, i.e. a 0xFF that is not a stuffed `FF 00` or a restart marker
/// `FF D0`–`FF D7`; or at the end of the data.
fn entropy_coded_end(data: &[u8], from: usize) -> usize {
    let mut i = from;
    while i < data.len() {
        if data[i] == 0xFF {
            match data.get(i + 1) {
                Some(0x00 | 0xD0..=0xD7) => {
                    i += 2;
                    continue;
                }
                Some(_) => return i,
                None => return data.len(),
            }
        }
        i += 1;
    }
    data.len()
}

/// The EXIF orientation (1–8) of an APP1 payload, if it is EXIF and has
/// one. Any inconsistency gives `None`: the orientation is a nicety.
fn exif_orientation(payload: &[u8]) -> Option<u16> {
    let tiff = payload.strip_prefix(b"Exif\0\0")?;
    let big_endian = match tiff.get(0..2)? {
        b"MM" => true,
        b"II" => false,
        _ => return None,
    };
    let u16_at = |at: usize| {
        let b = tiff.get(at..at.checked_add(2)?)?;
        Some(if big_endian { u16::from_be_bytes([b[0], b[1]]) } else { u16::from_le_bytes([b[0], b[1]]) })
    };
    let u32_at = |at: usize| {
        let b = tiff.get(at..at.checked_add(4)?)?;
        let b = [b[0], b[1], b[2], b[3]];
        Some(if big_endian { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) })
    };
    if u16_at(2)? != 42 {
        return None;
    }
    let ifd0 = usize::try_from(u32_at(4)?).ok()?;
    let entries = usize::from(u16_at(ifd0)?);
    for k in 0..entries {
        let entry = ifd0.checked_add(2)?.checked_add(k.checked_mul(12)?)?;
        // Orientation: tag 0x0112, type SHORT (3), count 1, value inline.
        if u16_at(entry)? == 0x0112 {
            let value = u16_at(entry.checked_add(8)?)?;
            return (u16_at(entry.checked_add(2)?)? == 3 && (1..=8).contains(&value)).then_some(value);
        }
    }
    None
}

/// A minimal APP1 EXIF segment holding only `orientation`.
fn orientation_segment(orientation: u16) -> Vec<u8> {
    let mut s = vec![0xFF, APP1, 0x00, 34];
    s.extend_from_slice(b"Exif\0\0");
    // TIFF header, big-endian, IFD0 at offset 8.
    s.extend_from_slice(b"MM\x00\x2A\x00\x00\x00\x08");
    // One entry: Orientation, SHORT, count 1, value (left-justified).
    s.extend_from_slice(&[0x00, 0x01, 0x01, 0x12, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01]);
    s.extend_from_slice(&orientation.to_be_bytes());
    s.extend_from_slice(&[0x00, 0x00]);
    // No next IFD.
    s.extend_from_slice(&[0x00, 0x00, 0x00, 0x00]);
    s
}

// ---------------------------------------------------------------- PNG

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

fn strip_png(data: &[u8]) -> Result<Vec<u8>, ImageMetaError> {
    if !data.starts_with(PNG_SIGNATURE) {
        return Err(malformed(PNG, "no PNG signature"));
    }
    let mut out = Vec::with_capacity(data.len());
    out.extend_from_slice(PNG_SIGNATURE);
    let mut pos = PNG_SIGNATURE.len();
    let mut first = true;
    loop {
        let len = be32(data, pos).ok_or(ImageMetaError::Truncated(PNG))?;
        if len > 0x7FFF_FFFF {
            return Err(malformed(PNG, "chunk length over 2^31 - 1"));
        }
        let kind = data.get(pos + 4..pos + 8).ok_or(ImageMetaError::Truncated(PNG))?;
        if !kind.iter().all(u8::is_ascii_alphabetic) {
            return Err(malformed(PNG, "chunk type is not four letters"));
        }
        if first && kind != b"IHDR" {
            return Err(malformed(PNG, "the first chunk is not IHDR"));
        }
        first = false;
        // Length, type, data, CRC. `len` < 2^31, so this cannot overflow.
        let end = pos + 12 + len as usize;
        let chunk = data.get(pos..end).ok_or(ImageMetaError::Truncated(PNG))?;
        if !matches!(kind, b"eXIf" | b"tEXt" | b"iTXt" | b"zTXt") {
            out.extend_from_slice(chunk);
        }
        pos = end;
        if kind == b"IEND" {
            return Ok(out);
        }
    }
}

// ---------------------------------------------------------------- WebP

/// VP8X flags that announce EXIF and XMP chunks.
const VP8X_EXIF: u8 = 0x08;
const VP8X_XMP: u8 = 0x04;

fn strip_webp(data: &[u8]) -> Result<Vec<u8>, ImageMetaError> {
    if data.len() < 12 || &data[0..4] != b"RIFF" || &data[8..12] != b"WEBP" {
        return Err(malformed(WEBP, "no RIFF/WEBP header"));
    }
    let riff_size = le32(data, 4).ok_or(ImageMetaError::Truncated(WEBP))? as usize;
    if riff_size < 4 {
        return Err(malformed(WEBP, "RIFF size below 4"));
    }
    // Bytes after the RIFF's declared end are not part of the image.
    let riff_end = riff_size.checked_add(8).ok_or(malformed(WEBP, "RIFF size overflows"))?;
    if riff_end > data.len() {
        return Err(ImageMetaError::Truncated(WEBP));
    }
    let mut out = Vec::with_capacity(riff_end);
    out.extend_from_slice(b"RIFF\0\0\0\0WEBP");
    let mut vp8x_flags = None;
    let mut pos = 12;
    while pos < riff_end {
        let body = pos + 8;
        if body > riff_end {
            return Err(ImageMetaError::Truncated(WEBP));
        }
        let fourcc = &data[pos..pos + 4];
        let size = le32(data, pos + 4).ok_or(ImageMetaError::Truncated(WEBP))? as usize;
        let data_end = body.checked_add(size).filter(|&e| e <= riff_end).ok_or(ImageMetaError::Truncated(WEBP))?;
        match fourcc {
            b"EXIF" | b"XMP " => {}
            _ => {
                if fourcc == b"VP8X" {
                    if size < 10 {
                        return Err(malformed(WEBP, "VP8X chunk shorter than 10 bytes"));
                    }
                    vp8x_flags = Some(out.len() + 8);
                }
                out.extend_from_slice(&data[pos..data_end]);
                // Chunks are padded to an even size; a missing final pad
                // byte (some encoders) is added back.
                if size % 2 == 1 {
                    out.push(0);
                }
            }
        }
        pos = data_end + size % 2;
    }
    if let Some(i) = vp8x_flags {
        out[i] &= !(VP8X_EXIF | VP8X_XMP);
    }
    // Never larger than the input's RIFF, whose size fitted in a u32.
    let size = u32::try_from(out.len() - 8).map_err(|_| malformed(WEBP, "RIFF too large"))?;
    out[4..8].copy_from_slice(&size.to_le_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The secret a fixture's GPS data carries; it must never survive.
    const SECRET: &[u8] = b"GPS 48.8584N 2.2945E";

    /// A TIFF/EXIF block (big-endian) with an orientation in IFD0 and a
    /// GPS IFD holding a latitude reference and a processing-method string.
    fn tiff_with_gps(orientation: Option<u16>) -> Vec<u8> {
        let mut t = b"MM\x00\x2A\x00\x00\x00\x08".to_vec();
        let ifd0_entries: u16 = if orientation.is_some() { 2 } else { 1 };
        let gps_ifd = 8 + 2 + 12 * u32::from(ifd0_entries) + 4;
        let gps_data = gps_ifd + 2 + 2 * 12 + 4;
        t.extend_from_slice(&ifd0_entries.to_be_bytes());
        if let Some(o) = orientation {
            t.extend_from_slice(&[0x01, 0x12, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01]);
            t.extend_from_slice(&o.to_be_bytes());
            t.extend_from_slice(&[0, 0]);
        }
        // GPSInfo pointer: tag 0x8825, LONG.
        t.extend_from_slice(&[0x88, 0x25, 0x00, 0x04, 0x00, 0x00, 0x00, 0x01]);
        t.extend_from_slice(&gps_ifd.to_be_bytes());
        t.extend_from_slice(&[0, 0, 0, 0]);
        // GPS IFD: GPSLatitudeRef "N", GPSProcessingMethod → SECRET.
        t.extend_from_slice(&[0x00, 0x02]);
        t.extend_from_slice(&[0x00, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, 0x02, b'N', 0, 0, 0]);
        t.extend_from_slice(&[0x00, 0x1B, 0x00, 0x07]);
        t.extend_from_slice(&(SECRET.len() as u32).to_be_bytes());
        t.extend_from_slice(&gps_data.to_be_bytes());
        t.extend_from_slice(&[0, 0, 0, 0]);
        t.extend_from_slice(SECRET);
        t
    }

    fn jpeg_segment(marker: u8, payload: &[u8]) -> Vec<u8> {
        let mut s = vec![0xFF, marker];
        s.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
        s.extend_from_slice(payload);
        s
    }

    fn exif_payload(orientation: Option<u16>) -> Vec<u8> {
        [b"Exif\0\0".as_slice(), &tiff_with_gps(orientation)].concat()
    }

    /// The image parts of the JPEG fixture, which must survive unchanged.
    struct JpegParts {
        app0: Vec<u8>,
        icc: Vec<u8>,
        tables: Vec<u8>,
        scan: Vec<u8>,
    }

    fn jpeg_parts() -> JpegParts {
        let app0 = jpeg_segment(0xE0, b"JFIF\0\x01\x01\x00\x00\x01\x00\x01\x00\x00");
        let icc = jpeg_segment(0xE2, b"ICC_PROFILE\0\x01\x01fake-profile");
        let mut tables = jpeg_segment(0xDB, &[0u8; 65]);
        tables.extend(jpeg_segment(0xC0, &[8, 0, 1, 0, 1, 1, 1, 0x11, 0]));
        tables.extend(jpeg_segment(0xC4, &[0u8; 20]));
        // SOS header, then entropy-coded data with a stuffed FF 00 and a
        // restart marker (neither ends the scan).
        let mut scan = jpeg_segment(0xDA, &[1, 1, 0, 0, 63, 0]);
        scan.extend_from_slice(&[0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD0, 0x56, 0xE1, 0x78]);
        JpegParts { app0, icc, tables, scan }
    }

    /// A JPEG with the parts above plus Exif (GPS), XMP, IPTC and a comment,
    /// and a trailing "multi-picture" image with EXIF after EOI.
    fn jpeg_with_gps(orientation: Option<u16>) -> Vec<u8> {
        let p = jpeg_parts();
        let mut j = vec![0xFF, 0xD8];
        j.extend(&p.app0);
        j.extend(jpeg_segment(0xE1, &exif_payload(orientation)));
        j.extend(jpeg_segment(0xE1, b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta exif:GPSLatitude='48.8584N'/>"));
        j.extend(&p.icc);
        j.extend(jpeg_segment(0xED, b"Photoshop 3.0\08BIM\x04\x04 city=Paris"));
        j.extend(jpeg_segment(0xFE, b"shot at 48.8584N"));
        j.extend(&p.tables);
        j.extend(&p.scan);
        j.extend([0xFF, 0xD9]);
        // What phones append: a second JPEG with its own EXIF.
        j.extend([0xFF, 0xD8]);
        j.extend(jpeg_segment(0xE1, &exif_payload(None)));
        j.extend([0xFF, 0xD9]);
        j
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn jpeg_loses_exif_xmp_iptc_comments_and_trailers_and_keeps_the_image() {
        let input = jpeg_with_gps(None);
        assert!(contains(&input, SECRET));
        let out = strip_metadata("image/jpeg", &input).expect("strips");
        let p = jpeg_parts();
        let expected = [vec![0xFF, 0xD8], p.app0, p.icc, p.tables, p.scan, vec![0xFF, 0xD9]].concat();
        assert_eq!(out.as_ref(), expected.as_slice());
        assert!(!contains(&out, SECRET) && !contains(&out, b"48.8584") && !contains(&out, b"Exif"));
    }

    #[test]
    fn jpeg_keeps_only_the_orientation_of_its_exif() {
        let input = jpeg_with_gps(Some(6));
        let out = strip_metadata("image/jpeg", &input).expect("strips");
        assert!(!contains(&out, SECRET) && !contains(&out, b"48.8584"));
        let p = jpeg_parts();
        // Right after SOI and JFIF: an EXIF holding orientation 6 only.
        let exif_start = 2 + p.app0.len();
        assert_eq!(&out[..exif_start], [vec![0xFF, 0xD8], p.app0].concat().as_slice());
        let seg = &out[exif_start..exif_start + 36];
        assert_eq!(&seg[..2], &[0xFF, 0xE1]);
        assert_eq!(exif_orientation(&seg[4..]), Some(6));
        assert!(out.ends_with(&[p.tables, p.scan, vec![0xFF, 0xD9]].concat()));
        // Orientation 1 is the default: no EXIF at all.
        let input = jpeg_with_gps(Some(1));
        let out = strip_metadata("image/jpeg", &input).expect("strips");
        assert!(!contains(&out, b"Exif"));
        // Little-endian EXIF is read too.
        let le = b"Exif\0\0II\x2A\x00\x08\x00\x00\x00\x01\x00\x12\x01\x03\x00\x01\x00\x00\x00\x08\x00\x00\x00";
        assert_eq!(exif_orientation(le), Some(8));
    }

    #[test]
    fn jpeg_walks_segments_between_progressive_scans() {
        let p = jpeg_parts();
        let mut input = vec![0xFF, 0xD8];
        input.extend(&p.tables);
        input.extend(&p.scan);
        input.extend(jpeg_segment(0xE1, &exif_payload(None)));
        // Fill bytes before a marker are allowed.
        input.extend([0xFF, 0xFF]);
        input.extend(&p.scan);
        input.extend([0xFF, 0xD9]);
        let out = strip_metadata("image/jpeg", &input).expect("strips");
        assert!(!contains(&out, SECRET));
        let expected = [vec![0xFF, 0xD8], p.tables, p.scan.clone(), p.scan, vec![0xFF, 0xD9]].concat();
        assert_eq!(out.as_ref(), expected.as_slice());
    }

    #[test]
    fn broken_jpegs_are_refused_not_panicked_on() {
        let full = jpeg_with_gps(Some(3));
        let sos = full.windows(2).position(|w| w == [0xFF, 0xDA]).expect("has SOS");
        // Cut anywhere before the scan: refused.
        for cut in 0..sos {
            assert!(strip_jpeg(&full[..cut]).is_err(), "cut at {cut}");
        }
        // Cut inside the scan: kept as far as it goes, still stripped.
        for cut in sos + 4..full.len() {
            if let Ok(out) = strip_jpeg(&full[..cut]) {
                assert!(!contains(&out, SECRET), "cut at {cut}");
            }
        }
        assert!(strip_jpeg(&[0xFF, 0xD8, 0xFF, 0xE1, 0x00, 0x01]).is_err(), "length below 2");
        assert!(strip_jpeg(&[0xFF, 0xD8, 0x00]).is_err(), "no marker");
        assert!(strip_jpeg(&[0xFF, 0xD8, 0xFF, 0xE1, 0xFF, 0xFF, 0x00]).is_err(), "length past the end");
        assert!(strip_jpeg(&[0xFF, 0xD8, 0xFF, 0xFF, 0xFF]).is_err(), "only fill bytes");
        assert_eq!(exif_orientation(b"Exif\0\0MM\x00\x2A\xFF\xFF\xFF\xFF"), None);
        assert_eq!(exif_orientation(b"Exif\0\0MM\x00\x2A\x00\x00\x00\x08\xFF\xFF"), None);
    }

    fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
        let mut c = (data.len() as u32).to_be_bytes().to_vec();
        c.extend_from_slice(kind);
        c.extend_from_slice(data);
        // The CRC is not checked here; any value does.
        c.extend_from_slice(&[0xDE, 0xAD, 0xBE, 0xEF]);
        c
    }

    #[test]
    fn png_loses_exif_and_text_chunks_and_keeps_the_image() {
        let ihdr = png_chunk(b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 6, 0, 0, 0]);
        let idat = png_chunk(b"IDAT", &[0x78, 0x9C, 0x63, 0xF8, 0xCF, 0xC0, 0xF0, 0x1F, 0x00, 0x05]);
        let iccp = png_chunk(b"iCCP", b"icc\0\0zz");
        let iend = png_chunk(b"IEND", &[]);
        let mut input = PNG_SIGNATURE.to_vec();
        input.extend(&ihdr);
        input.extend(png_chunk(b"eXIf", &tiff_with_gps(Some(6))));
        input.extend(&iccp);
        input.extend(png_chunk(b"tEXt", b"Comment\0shot at 48.8584N"));
        input.extend(png_chunk(b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0<x exif:GPSLatitude='48.8584N'/>"));
        input.extend(png_chunk(b"zTXt", b"Raw profile type exif\0\0x"));
        input.extend(&idat);
        input.extend(&iend);
        input.extend_from_slice(b"trailing 48.8584N");
        let out = strip_metadata("image/png", &input).expect("strips");
        let expected = [PNG_SIGNATURE.to_vec(), ihdr, iccp, idat, iend].concat();
        assert_eq!(out.as_ref(), expected.as_slice());
        assert!(!contains(&out, b"48.8584"));

        // Cut anywhere before the end of IEND: refused.
        for cut in 0..input.len() - b"trailing 48.8584N".len() {
            assert!(strip_png(&input[..cut]).is_err(), "cut at {cut}");
        }
        let mut huge = PNG_SIGNATURE.to_vec();
        huge.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xF0]);
        huge.extend_from_slice(b"IHDR");
        assert!(strip_png(&huge).is_err());
        let mut not_ihdr = PNG_SIGNATURE.to_vec();
        not_ihdr.extend(png_chunk(b"IDAT", &[]));
        assert!(strip_png(&not_ihdr).is_err());
    }

    fn riff_chunk(fourcc: &[u8; 4], data: &[u8]) -> Vec<u8> {
        let mut c = fourcc.to_vec();
        c.extend_from_slice(&(data.len() as u32).to_le_bytes());
        c.extend_from_slice(data);
        if data.len() % 2 == 1 {
            c.push(0);
        }
        c
    }

    fn riff(chunks: &[Vec<u8>]) -> Vec<u8> {
        let body = chunks.concat();
        [b"RIFF".as_slice(), &((body.len() + 4) as u32).to_le_bytes(), b"WEBP", &body].concat()
    }

    #[test]
    fn webp_loses_exif_and_xmp_chunks_and_fixes_size_and_flags() {
        // VP8X: flags ICC | alpha | EXIF | XMP, canvas 1×1.
        let vp8x = |flags: u8| riff_chunk(b"VP8X", &[flags, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let iccp = riff_chunk(b"ICCP", b"fake-icc");
        let alph = riff_chunk(b"ALPH", &[0, 1, 2]);
        let vp8l = riff_chunk(b"VP8L", &[0x2F, 0, 0, 0, 0x10, 0x07, 0x10, 0x11, 0x11]);
        let exif = riff_chunk(b"EXIF", &tiff_with_gps(Some(6)));
        let xmp = riff_chunk(b"XMP ", b"<x exif:GPSLatitude='48.8584N'/>");
        let input = riff(&[vp8x(0x20 | 0x10 | 0x08 | 0x04), iccp.clone(), alph.clone(), vp8l.clone(), exif, xmp]);
        let out = strip_metadata("image/webp", &input).expect("strips");
        let expected = riff(&[vp8x(0x20 | 0x10), iccp, alph, vp8l]);
        assert_eq!(out.as_ref(), expected.as_slice());
        assert!(!contains(&out, SECRET) && !contains(&out, b"48.8584"));
        assert_eq!(le32(&out, 4), Some(out.len() as u32 - 8), "RIFF size matches");

        for cut in 0..input.len() {
            assert!(strip_webp(&input[..cut]).is_err(), "cut at {cut}");
        }
        // Odd chunk without its final pad byte: accepted, padded.
        let mut unpadded = riff(&[riff_chunk(b"VP8L", &[1, 2, 3])]);
        unpadded.pop();
        let size = unpadded.len() as u32 - 8;
        unpadded[4..8].copy_from_slice(&size.to_le_bytes());
        assert_eq!(strip_webp(&unpadded).expect("accepted"), riff(&[riff_chunk(b"VP8L", &[1, 2, 3])]));
        // A chunk claiming more than the RIFF holds, a tiny VP8X, a huge RIFF size.
        assert!(strip_webp(&riff(&[b"VP8L\xFF\xFF\xFF\xFF".to_vec()])).is_err());
        assert!(strip_webp(&riff(&[riff_chunk(b"VP8X", &[0; 4])])).is_err());
        assert!(strip_webp(b"RIFF\xFF\xFF\xFF\xFFWEBP").is_err());
    }

    #[test]
    fn gif_and_unknown_types_pass_through_borrowed() {
        let gif = b"GIF89a\x01\x00\x01\x00";
        assert!(matches!(strip_metadata("image/gif", gif), Ok(Cow::Borrowed(b)) if b == gif));
    }
}
