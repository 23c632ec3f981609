//! Headless export of every figure of a results root (`viewer export`): PNG or SVG through
//! plotters, plus the CSV and JSON of the numbers behind each figure. No window, no GPU.

use std::path::{Path, PathBuf};

use shared::results::ResultsIndex;

use crate::figures::{Prepared, prepare_all};

/// The image format of exported figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// PNG (raster, at a chosen scale).
    Png,
    /// SVG (vector).
    Svg,
}

/// What an export wrote, and the figures it could not draw (the others are written anyway).
#[derive(Debug, Default)]
pub struct Report {
    /// Files written.
    pub written: Vec<PathBuf>,
    /// One message per figure that could not be drawn.
    pub errors: Vec<String>,
}

/// Writes one prepared figure set into `out`. A figure that cannot be drawn is reported and
/// skipped; only file-system errors stop the export.
pub fn write_prepared(
    p: &Prepared,
    out: &Path,
    format: Format,
    scale: f64,
) -> Result<Report, String> {
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let mut report = Report::default();
    let write = |name: String, bytes: &[u8], report: &mut Report| -> Result<(), String> {
        let path = out.join(name);
        std::fs::write(&path, bytes)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        report.written.push(path);
        Ok(())
    };
    for fig in &p.figures {
        let stem = p.figure_stem(fig);
        let drawn = match format {
            Format::Png => {
                crate::draw_plotters::to_png(fig, scale).map(|b| (format!("{stem}.png"), b))
            }
            Format::Svg => crate::draw_plotters::to_svg(fig, scale)
                .map(|s| (format!("{stem}.svg"), s.into_bytes())),
        };
        match drawn {
            Ok((name, bytes)) => write(name, &bytes, &mut report)?,
            Err(e) => report.errors.push(format!("{stem}: {e}")),
        }
    }
    for (suffix, text) in &p.csv {
        write(
            format!("{}{suffix}.csv", p.id),
            text.as_bytes(),
            &mut report,
        )?;
    }
    write(format!("{}.json", p.id), p.json.as_bytes(), &mut report)?;
    Ok(report)
}

/// Exports every figure of `index` into `out`.
pub fn export_all(
    index: &ResultsIndex,
    out: &Path,
    format: Format,
    scale: f64,
) -> Result<Report, String> {
    let mut report = Report::default();
    for p in prepare_all(index) {
        let r = write_prepared(&p, out, format, scale)?;
        report.written.extend(r.written);
        report.errors.extend(r.errors);
    }
    Ok(report)
}
