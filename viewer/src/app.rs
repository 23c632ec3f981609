//! The eframe application: a run browser on the left, the selected figure in the middle.

/// The viewer application state.
#[derive(Default)]
pub struct ViewerApp {
    /// A line shown in the status bar (what was opened, what failed).
    status: String,
}

impl ViewerApp {
    /// Creates the app; `results_root` is shown as the opened root (native: a folder path).
    pub fn new(results_root: Option<String>) -> Self {
        let status = match results_root {
            Some(root) => format!("results root: {root}"),
            None => "no results root opened".to_owned(),
        };
        Self { status }
    }
}

impl eframe::App for ViewerApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        egui::CentralPanel::default().show_inside(ui, |ui| {
            ui.heading("steerlab viewer");
            ui.label(&self.status);
        });
    }
}
