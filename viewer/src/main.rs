//! Native entry point: `viewer [RESULTS_DIR]` opens the window; `viewer export` renders figures headless.

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use clap::{Parser, Subcommand};

    /// The steerlab results viewer.
    #[derive(Parser, Debug)]
    #[command(version, about)]
    pub struct Cli {
        /// A results root written by the trainer (opened and watched for new files).
        pub results_dir: Option<std::path::PathBuf>,
        /// What to do instead of opening the window.
        #[command(subcommand)]
        pub command: Option<Command>,
    }

    /// Headless subcommands.
    #[derive(Subcommand, Debug)]
    pub enum Command {}

    pub fn main() -> anyhow::Result<()> {
        let cli = Cli::parse();
        if let Some(command) = cli.command {
            match command {}
        }
        let root = cli.results_dir.map(|p| p.display().to_string());
        let options = eframe::NativeOptions::default();
        eframe::run_native(
            "steerlab viewer",
            options,
            Box::new(move |_cc| Ok(Box::new(viewer::ViewerApp::new(root)))),
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
