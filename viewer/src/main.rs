//! Native entry point: `viewer [RESULTS_DIR]` opens the window; `viewer export RESULTS --out DIR`
//! renders every figure headless (no window, no GPU).

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use anyhow::Context as _;
    use clap::{Parser, Subcommand, ValueEnum};

    /// The steerlab results viewer.
    #[derive(Parser, Debug)]
    #[command(version, about)]
    pub struct Cli {
        /// A results root written by the trainer (opened and watched for new files), or a `.zip` of one.
        pub results_dir: Option<std::path::PathBuf>,
        /// Open the built-in example data instead.
        #[arg(long)]
        pub example: bool,
        /// What to do instead of opening the window.
        #[command(subcommand)]
        pub command: Option<Command>,
    }

    /// Image format of exported figures.
    #[derive(ValueEnum, Clone, Copy, Debug)]
    pub enum Format {
        /// PNG at `--scale`.
        Png,
        /// SVG.
        Svg,
    }

    /// Headless subcommands.
    #[derive(Subcommand, Debug)]
    pub enum Command {
        /// Render every figure of a results root (a folder or a `.zip`) into files, with the CSV and
        /// JSON of the numbers behind each.
        Export {
            /// The results root (a folder or a `.zip`).
            results: std::path::PathBuf,
            /// Output folder (created).
            #[arg(long)]
            out: std::path::PathBuf,
            /// Image format.
            #[arg(long, value_enum, default_value = "png")]
            format: Format,
            /// PNG scale factor (2 = twice the screen size).
            #[arg(long, default_value_t = 2.0)]
            scale: f64,
        },
        /// Write the built-in example results (the `shared` fixtures) into a folder, or a `.zip` when
        /// the path ends in `.zip`.
        Example {
            /// Output folder or `.zip`.
            out: std::path::PathBuf,
        },
    }

    fn read_root(path: &std::path::Path) -> anyhow::Result<viewer::source::Files> {
        if path.extension().is_some_and(|e| e == "zip") {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            viewer::source::from_zip(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
        } else {
            viewer::source::read_folder(path).map_err(|e| anyhow::anyhow!(e))
        }
    }

    fn write_example(out: &std::path::Path) -> anyhow::Result<()> {
        let files = shared::fixtures::bundle();
        if out.extension().is_some_and(|e| e == "zip") {
            if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            let f = std::fs::File::create(out)
                .with_context(|| format!("creating {}", out.display()))?;
            let mut w = zip::ZipWriter::new(f);
            let opts = zip::write::SimpleFileOptions::default();
            for (p, b) in &files {
                w.start_file(p.as_str(), opts)?;
                std::io::Write::write_all(&mut w, b)?;
            }
            w.finish()?;
        } else {
            for (p, b) in &files {
                let path = out.join(p);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::write(&path, b).with_context(|| format!("writing {}", path.display()))?;
            }
        }
        eprintln!("wrote {} example files to {}", files.len(), out.display());
        Ok(())
    }

    pub fn main() -> anyhow::Result<()> {
        let cli = Cli::parse();
        match cli.command {
            Some(Command::Export {
                results,
                out,
                format,
                scale,
            }) => {
                let files = read_root(&results)?;
                let index = shared::results::ResultsIndex::from_files(
                    files.iter().map(|(p, b)| (p.clone(), b.as_slice())),
                );
                // each message already names its file
                for msg in index.problems.values() {
                    eprintln!("warning: {msg}");
                }
                let format = match format {
                    Format::Png => viewer::export::Format::Png,
                    Format::Svg => viewer::export::Format::Svg,
                };
                let report = viewer::export::export_all(&index, &out, format, scale)
                    .map_err(|e| anyhow::anyhow!(e))?;
                for e in &report.errors {
                    eprintln!("error: {e}");
                }
                eprintln!(
                    "wrote {} file(s) to {}",
                    report.written.len(),
                    out.display()
                );
                if !report.errors.is_empty() {
                    anyhow::bail!("{} figure(s) could not be drawn", report.errors.len());
                }
                return Ok(());
            }
            Some(Command::Example { out }) => return write_example(&out),
            None => {}
        }
        let app = match (&cli.results_dir, cli.example) {
            (_, true) => viewer::ViewerApp::with_files("example data", shared::fixtures::bundle()),
            (Some(p), _) if p.extension().is_some_and(|e| e == "zip") => {
                viewer::ViewerApp::with_files(&p.display().to_string(), read_root(p)?)
            }
            (Some(p), _) => {
                let mut app = viewer::ViewerApp::new();
                app.open_folder(p);
                app
            }
            (None, false) => viewer::ViewerApp::new(),
        };
        let options = eframe::NativeOptions {
            viewport: egui::ViewportBuilder::default()
                .with_inner_size([1400.0, 900.0])
                .with_drag_and_drop(true),
            ..Default::default()
        };
        eframe::run_native(
            "steerlab viewer",
            options,
            Box::new(move |_cc| Ok(Box::new(app))),
        )
        .map_err(|e| anyhow::anyhow!("could not open the viewer window: {e}"))
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn main() -> anyhow::Result<()> {
    native::main()
}

#[cfg(target_arch = "wasm32")]
fn main() {}
