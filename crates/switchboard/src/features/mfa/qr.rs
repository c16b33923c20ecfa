//! The enrolment QR code, as SVG (for the panel) and PNG (for anything else): the
//! `otpauth://` URI that authenticator apps scan. qrcode encodes; the PNG is drawn
//! here from its modules rather than pulling in an image library for one bitmap.

use base64::Engine;
use qrcode::{Color, EcLevel, QrCode};

/// Pixels per module in the PNG, and the quiet zone around the code (in modules,
/// as ISO/IEC 18004 asks).
const SCALE: usize = 6;
const QUIET: usize = 4;

fn code(text: &str) -> Result<QrCode, String> {
    QrCode::with_error_correction_level(text, EcLevel::M).map_err(|e| e.to_string())
}

pub fn svg(text: &str) -> Result<String, String> {
    Ok(code(text)?
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build())
}

/// A greyscale PNG of the code, base64.
pub fn png_base64(text: &str) -> Result<String, String> {
    let code = code(text)?;
    let modules = code.width();
    let colors = code.to_colors();
    let side = (modules + 2 * QUIET) * SCALE;
    let mut pixels = vec![255u8; side * side];
    for (i, color) in colors.iter().enumerate() {
        if *color == Color::Dark {
            let (mx, my) = (i % modules + QUIET, i / modules + QUIET);
            for y in my * SCALE..(my + 1) * SCALE {
                pixels[y * side + mx * SCALE..y * side + (mx + 1) * SCALE].fill(0);
            }
        }
    }
    let mut out = Vec::new();
    {
        let side = u32::try_from(side).map_err(|e| e.to_string())?;
        let mut encoder = png::Encoder::new(&mut out, side, side);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
        writer
            .write_image_data(&pixels)
            .map_err(|e| e.to_string())?;
    }
    Ok(base64::engine::general_purpose::STANDARD.encode(out))
}
