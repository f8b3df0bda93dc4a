//! Drawing the report images: a pixel canvas over plotters' bitmap backend
//! (which also encodes the PNG), text in the built-in 8x8 font (font8x8's
//! public-domain glyphs, so no system font is needed), and the colour map.

use plotters::prelude::*;
use std::path::Path;

/// Smallest image side the reports accept.
pub const MIN_SIDE: u32 = 200;

/// Why an image could not be drawn or written.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DrawError(String);

fn err(e: impl std::fmt::Display) -> DrawError {
    DrawError(e.to_string())
}

/// An RGB colour.
pub type Rgb = (u8, u8, u8);

pub const BLACK_RGB: Rgb = (0, 0, 0);
pub const WHITE_RGB: Rgb = (255, 255, 255);
pub const GRID_RGB: Rgb = (225, 225, 225);
pub const TEXT_RGB: Rgb = (30, 30, 30);
pub const DIM_RGB: Rgb = (110, 110, 110);
/// Cells no snapshot covers.
pub const NO_DATA_RGB: Rgb = (205, 205, 205);

/// Line colours for several series, distinguishable and print-safe.
pub const SERIES_RGB: [Rgb; 6] =
    [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (23, 190, 207)];

/// The "inferno" colour map (matplotlib), as 9 anchors: black through
/// purple and orange to pale yellow; its lightness rises monotonically, so
/// hotter always reads brighter, also in grey print.
const INFERNO: [Rgb; 9] = [
    (0, 0, 4),
    (31, 12, 72),
    (85, 15, 109),
    (136, 34, 106),
    (186, 54, 85),
    (227, 89, 51),
    (249, 140, 10),
    (249, 201, 50),
    (252, 255, 164),
];

/// The colour of `v` in 0.0 ..= 1.0.
pub fn heat_color(v: f64) -> Rgb {
    let v = if v.is_finite() { v.clamp(0.0, 1.0) } else { 0.0 };
    let x = v * (INFERNO.len() - 1) as f64;
    let i = (x.floor() as usize).min(INFERNO.len() - 2);
    let f = x - i as f64;
    let mix = |a: u8, b: u8| (a as f64 + (b as f64 - a as f64) * f).round() as u8;
    let (a, b) = (INFERNO[i], INFERNO[i + 1]);
    (mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Relative luminance (0..255) of a colour, as a test or a reader sees brightness.
pub fn luminance(c: Rgb) -> f64 {
    0.2126 * c.0 as f64 + 0.7152 * c.1 as f64 + 0.0722 * c.2 as f64
}

/// Width in pixels of the font at scale 1.
pub const GLYPH_PX: i32 = 8;

/// Where a text's anchor point is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    /// (x, y) is the top-left corner.
    TopLeft,
    /// (x, y) is the middle of the top edge.
    TopCenter,
    /// (x, y) is the middle of the right edge.
    MiddleRight,
    /// (x, y) is the middle of the left edge.
    MiddleLeft,
}

/// Pixels a text takes at `scale`: (width, height).
pub fn text_size(s: &str, scale: i32) -> (i32, i32) {
    (s.chars().count() as i32 * GLYPH_PX * scale, GLYPH_PX * scale)
}

fn glyph(c: char) -> [u8; 8] {
    let i = c as usize;
    if i < 128 { font8x8::legacy::BASIC_LEGACY[i] } else { font8x8::legacy::BASIC_LEGACY[b'?' as usize] }
}

/// A white canvas of `w` x `h` pixels that becomes a PNG file.
pub struct Canvas<'a> {
    area: DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>,
    pub w: i32,
    pub h: i32,
}

impl std::fmt::Debug for Canvas<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Canvas").field("w", &self.w).field("h", &self.h).finish()
    }
}

fn color(c: Rgb) -> RGBColor {
    RGBColor(c.0, c.1, c.2)
}

impl<'a> Canvas<'a> {
    pub fn new(path: &'a Path, w: u32, h: u32) -> Result<Canvas<'a>, DrawError> {
        let area = BitMapBackend::new(path, (w, h)).into_drawing_area();
        area.fill(&WHITE).map_err(err)?;
        Ok(Canvas { area, w: w as i32, h: h as i32 })
    }

    pub fn pixel(&self, x: i32, y: i32, c: Rgb) -> Result<(), DrawError> {
        if x < 0 || y < 0 || x >= self.w || y >= self.h {
            return Ok(());
        }
        self.area.draw_pixel((x, y), &color(c)).map_err(err)
    }

    /// A filled rectangle with corners (x0, y0) and (x1, y1), both inclusive.
    pub fn fill(&self, x0: i32, y0: i32, x1: i32, y1: i32, c: Rgb) -> Result<(), DrawError> {
        let style = ShapeStyle { color: color(c).to_rgba(), filled: true, stroke_width: 0 };
        // The bitmap backend fills up to, not including, the second corner.
        self.area.draw(&Rectangle::new([(x0, y0), (x1 + 1, y1 + 1)], style)).map_err(err)
    }

    /// Copy a `w` x `h` block of RGB pixels (row-major, 3 bytes each) to (x, y).
    pub fn blit(&self, x: i32, y: i32, w: u32, h: u32, rgb: Vec<u8>) -> Result<(), DrawError> {
        let elem = BitMapElement::<(i32, i32)>::with_owned_buffer((x, y), (w, h), rgb).ok_or_else(|| {
            DrawError(format!("a {w}x{h} block needs {} bytes", w as usize * h as usize * 3))
        })?;
        self.area.draw(&elem).map_err(err)
    }

    /// A rectangle's outline.
    pub fn outline(&self, x0: i32, y0: i32, x1: i32, y1: i32, c: Rgb) -> Result<(), DrawError> {
        let style = ShapeStyle { color: color(c).to_rgba(), filled: false, stroke_width: 1 };
        self.area.draw(&Rectangle::new([(x0, y0), (x1, y1)], style)).map_err(err)
    }

    /// A polyline of the given width.
    pub fn line(&self, points: &[(i32, i32)], c: Rgb, width: u32) -> Result<(), DrawError> {
        if points.len() < 2 {
            return Ok(());
        }
        let style = ShapeStyle { color: color(c).to_rgba(), filled: false, stroke_width: width };
        self.area.draw(&PathElement::new(points.to_vec(), style)).map_err(err)
    }

    /// A dashed horizontal line from x0 to x1 at y.
    pub fn dashed_hline(&self, x0: i32, x1: i32, y: i32, c: Rgb, dash: i32) -> Result<(), DrawError> {
        let mut x = x0;
        while x <= x1 {
            self.fill(x, y, (x + dash - 1).min(x1), y, c)?;
            x += 2 * dash;
        }
        Ok(())
    }

    /// Text in the built-in font, each font pixel drawn `scale` x `scale`.
    pub fn text(&self, x: i32, y: i32, s: &str, scale: i32, c: Rgb, anchor: Anchor) -> Result<(), DrawError> {
        let (tw, th) = text_size(s, scale);
        let (x0, y0) = match anchor {
            Anchor::TopLeft => (x, y),
            Anchor::TopCenter => (x - tw / 2, y),
            Anchor::MiddleRight => (x - tw, y - th / 2),
            Anchor::MiddleLeft => (x, y - th / 2),
        };
        for (i, ch) in s.chars().enumerate() {
            let g = glyph(ch);
            let gx = x0 + i as i32 * GLYPH_PX * scale;
            for (row, bits) in g.iter().enumerate() {
                for col in 0..8 {
                    if bits & (1 << col) != 0 {
                        let px = gx + col * scale;
                        let py = y0 + row as i32 * scale;
                        if scale == 1 {
                            self.pixel(px, py, c)?;
                        } else {
                            self.fill(px, py, px + scale - 1, py + scale - 1, c)?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Text read bottom to top (turned 90° counter-clockwise), centred on (x, y).
    pub fn text_up(&self, x: i32, y: i32, s: &str, scale: i32, c: Rgb) -> Result<(), DrawError> {
        let (tw, th) = text_size(s, scale);
        // Unturned, the text is tw wide and th high; turned, th wide and tw high.
        let left = x - th / 2;
        let bottom = y + tw / 2;
        for (i, ch) in s.chars().enumerate() {
            let g = glyph(ch);
            for (row, bits) in g.iter().enumerate() {
                for col in 0..8 {
                    if bits & (1 << col) != 0 {
                        // Unturned pixel (u, v) goes to (left + v, bottom - u).
                        let u = i as i32 * GLYPH_PX * scale + col * scale;
                        let v = row as i32 * scale;
                        let (px, py) = (left + v, bottom - u - (scale - 1));
                        self.fill(px, py, px + scale - 1, py + scale - 1, c)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Encode and write the PNG.
    pub fn finish(self) -> Result<(), DrawError> {
        self.area.present().map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_map_brightens_monotonically() {
        let mut last = -1.0;
        for i in 0..=100 {
            let l = luminance(heat_color(i as f64 / 100.0));
            assert!(l >= last - 0.5, "luminance drops at {i}: {l} < {last}");
            last = l;
        }
        assert_eq!(heat_color(0.0), INFERNO[0]);
        assert_eq!(heat_color(1.0), INFERNO[8]);
        assert_eq!(heat_color(f64::NAN), INFERNO[0]);
    }

    #[test]
    fn font_has_the_characters_labels_use() {
        for c in "0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ ()%.,:-_/".chars() {
            assert!(c == ' ' || glyph(c).iter().any(|b| *b != 0), "no glyph for {c:?}");
        }
        assert_eq!(text_size("MiB", 2), (48, 16));
    }
}
