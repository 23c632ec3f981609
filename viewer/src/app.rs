//! The eframe application: a run browser on the left (models, setups, runs, checkpoints, seeds,
//! training runs, experiments, vectors, unreadable files), the selected figure in the middle with
//! its options and export buttons.

use std::sync::{Arc, Mutex};

use shared::aggregate::Metric;
use shared::benchmarks::AVERAGE;
use shared::experiments::ExperimentResult;
use shared::results::ResultsIndex;

use crate::chart::Figure;
use crate::figures::{self, accuracy_table, head_patching, token_effects, training_curves};
use crate::source::Files;

/// Something that arrived asynchronously (a fetched URL, picked files).
#[derive(Debug)]
pub enum Incoming {
    /// Files to add, with a label for the source.
    Files(String, Files),
    /// A load failed.
    Error(String),
    /// A screenshot of the figures, encoded as PNG, to save (native) or download (browser).
    Png(String, Vec<u8>),
}

/// A queue other tasks push into; the app drains it every frame.
pub type Inbox = Arc<Mutex<Vec<Incoming>>>;

/// Which view is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tab {
    /// The accuracy table.
    Table,
    /// Training curves.
    Training,
    /// One experiment result (by path).
    Experiment(String),
}

/// The viewer application state.
pub struct ViewerApp {
    index: ResultsIndex,
    source: String,
    status: String,
    tab: Tab,
    inbox: Inbox,
    table: accuracy_table::Options,
    training: training_curves::Options,
    view: figures::ViewOptions,
    excluded_seeds: std::collections::BTreeSet<u64>,
    figures_rect: Option<egui::Rect>,
    export_scale: f32,
    #[cfg(not(target_arch = "wasm32"))]
    export_dir: String,
    #[cfg(not(target_arch = "wasm32"))]
    watcher: Option<crate::source::DirWatcher>,
    #[cfg(not(target_arch = "wasm32"))]
    open_path: String,
    #[cfg(not(target_arch = "wasm32"))]
    waker: Arc<Mutex<Option<egui::Context>>>,
    #[cfg(not(target_arch = "wasm32"))]
    dialog: Option<egui_file::FileDialog>,
    pending_view: Option<String>,
    /// Where some buttons were last drawn (browser tests click them: the canvas has no DOM).
    #[cfg(target_arch = "wasm32")]
    web_buttons: std::collections::BTreeMap<String, egui::Rect>,
}

impl Default for ViewerApp {
    fn default() -> Self {
        Self {
            index: ResultsIndex::default(),
            source: String::new(),
            status: "Open a results folder, a .zip, or the example data.".into(),
            tab: Tab::Table,
            inbox: Inbox::default(),
            table: Default::default(),
            training: Default::default(),
            view: Default::default(),
            excluded_seeds: Default::default(),
            figures_rect: None,
            export_scale: 2.0,
            #[cfg(not(target_arch = "wasm32"))]
            export_dir: "figures".into(),
            #[cfg(not(target_arch = "wasm32"))]
            watcher: None,
            #[cfg(not(target_arch = "wasm32"))]
            open_path: String::new(),
            #[cfg(not(target_arch = "wasm32"))]
            waker: Default::default(),
            #[cfg(not(target_arch = "wasm32"))]
            dialog: None,
            pending_view: None,
            #[cfg(target_arch = "wasm32")]
            web_buttons: Default::default(),
        }
    }
}

impl ViewerApp {
    /// An app with nothing opened.
    pub fn new() -> Self {
        Self::default()
    }

    /// An app showing the given files (tests, the example data, the browser).
    pub fn with_files(label: &str, files: Files) -> Self {
        let mut app = Self::default();
        app.load_files(label, files, true);
        app
    }

    /// Opens a folder and watches it (native): files that a run creates or changes later are read
    /// as the operating system reports them ([`Self::apply_watched_changes`]).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open_folder(&mut self, path: &std::path::Path) {
        self.index = ResultsIndex::default();
        self.source = path.display().to_string();
        self.open_path = self.source.clone();
        let waker = self.waker.clone();
        let wake = move || {
            if let Ok(Some(ctx)) = waker.lock().as_deref() {
                ctx.request_repaint();
            }
        };
        // watch first, then read: nothing written in between is missed
        let watcher = crate::source::DirWatcher::new(path, wake);
        match crate::source::read_folder(path) {
            Ok(files) => self.load_files(&path.display().to_string(), files, false),
            Err(e) => self.status = e,
        }
        match watcher {
            Ok(w) => self.watcher = Some(w),
            Err(e) => {
                self.watcher = None;
                self.status = format!("{} (not watched: {e})", self.status);
            }
        }
    }

    /// Reads the files the watched folder reported since the last call; returns how many.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn apply_watched_changes(&mut self) -> usize {
        let Some(w) = &mut self.watcher else { return 0 };
        let label = w.root().display().to_string();
        let (files, errors) = w.changes();
        let n = files.len();
        if n > 0 {
            self.load_files(&label, files, false);
        }
        if let Some(e) = errors.last() {
            self.status = e.clone();
        }
        n
    }

    /// Opens a `.zip` bundle of a results root (native).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open_zip(&mut self, path: &std::path::Path) {
        self.watcher = None;
        let read = std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|b| crate::source::from_zip(&b));
        match read {
            Ok(files) => self.load_files(&path.display().to_string(), files, true),
            Err(e) => self.status = format!("{}: {e}", path.display()),
        }
    }

    /// The folder or zip dialog, while one is open; opens what was picked.
    #[cfg(not(target_arch = "wasm32"))]
    fn show_dialog(&mut self, ctx: &egui::Context) {
        let Some(dialog) = &mut self.dialog else {
            return;
        };
        if !dialog.show(ctx).selected() {
            if !dialog.visible() {
                self.dialog = None;
            }
            return;
        }
        let folder = dialog.dialog_type() == egui_file::DialogType::SelectFolder;
        let picked = dialog.path().map(std::path::Path::to_path_buf);
        self.dialog = None;
        match picked {
            Some(p) if folder => self.open_folder(&p),
            Some(p) => self.open_zip(&p),
            None => {}
        }
    }

    /// The queue for asynchronous loads (the browser entry pushes `?url=` results into it).
    pub fn inbox(&self) -> Inbox {
        self.inbox.clone()
    }

    /// Selects a view by name once results are loaded: `table`, `training`, or an experiment kind
    /// (`layers`, `pair_layers`, ...: the first file of that kind). Used by the browser's `?view=`.
    pub fn select_view(&mut self, name: &str) {
        self.pending_view = Some(name.to_owned());
        self.apply_pending_view();
    }

    fn apply_pending_view(&mut self) {
        let Some(name) = self.pending_view.clone() else {
            return;
        };
        let tab = match name.as_str() {
            "table" => Some(Tab::Table),
            "training" => Some(Tab::Training),
            kind => self
                .index
                .experiments
                .iter()
                .find(|(_, r)| r.kind() == kind)
                .map(|(p, _)| Tab::Experiment(p.clone())),
        };
        if let Some(tab) = tab {
            self.tab = tab;
            self.pending_view = None;
        }
    }

    /// The centre of a button as last drawn, in points (browser: "Open .zip / files…", "SVG",
    /// "PNG"), for browser tests that click it.
    #[cfg(target_arch = "wasm32")]
    pub fn button_center(&self, label: &str) -> Option<egui::Pos2> {
        self.web_buttons.get(label).map(|r| r.center())
    }

    /// The status line (what was opened, counts, the last error).
    pub fn status(&self) -> &str {
        &self.status
    }

    /// The index currently shown.
    pub fn index(&self) -> &ResultsIndex {
        &self.index
    }

    /// Selects a view.
    pub fn set_tab(&mut self, tab: Tab) {
        self.tab = tab;
    }

    fn load_files(&mut self, label: &str, files: Files, replace: bool) {
        if replace {
            self.index = ResultsIndex::default();
            self.source = label.to_owned();
        }
        let n = files.len();
        for (path, bytes) in files {
            self.index.add_file(path, &bytes);
        }
        self.status = format!(
            "{label}: {n} file(s) read · {} summaries, {} training runs, {} experiments, {} problem(s)",
            self.index.summaries.len(),
            self.index.training_runs.len(),
            self.index.experiments.len(),
            self.index.problems.len()
        );
        self.apply_pending_view();
        if self.index.summaries.is_empty() && self.tab == Tab::Table {
            self.tab = if !self.index.training_runs.is_empty() {
                Tab::Training
            } else if let Some(p) = self.index.experiments.keys().next() {
                Tab::Experiment(p.clone())
            } else {
                Tab::Table
            };
        }
    }

    fn drain_inbox(&mut self) {
        let items: Vec<Incoming> = match self.inbox.lock() {
            Ok(mut q) => q.drain(..).collect(),
            Err(_) => return,
        };
        for item in items {
            match item {
                Incoming::Files(label, files) => self.load_files(&label, files, true),
                Incoming::Error(e) => self.status = e,
                Incoming::Png(name, bytes) => {
                    #[cfg(target_arch = "wasm32")]
                    {
                        crate::web::download(&name, &bytes, "image/png");
                        self.status = format!("downloaded {name}");
                    }
                    #[cfg(not(target_arch = "wasm32"))]
                    {
                        let dir = std::path::PathBuf::from(&self.export_dir);
                        let path = dir.join(&name);
                        self.status = match std::fs::create_dir_all(&dir)
                            .and_then(|_| std::fs::write(&path, &bytes))
                        {
                            Ok(()) => format!("wrote {}", path.display()),
                            Err(e) => format!("cannot write {}: {e}", path.display()),
                        };
                    }
                }
            }
        }
    }

    fn handle_dropped(&mut self, ctx: &egui::Context) {
        let dropped: Vec<egui::DroppedFileHandle> = ctx.input(|i| i.raw.dropped_files.clone());
        if dropped.is_empty() {
            return;
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            if let [one] = dropped.as_slice()
                && one.path().is_dir()
            {
                let path = one.path().to_path_buf();
                self.open_folder(&path);
                return;
            }
            let mut files = Files::new();
            for f in dropped {
                let name = f.path().display().to_string();
                match f.bytes().and_then(|b| expand(&name, b)) {
                    Ok(more) => files.extend(more),
                    Err(e) => self.status = format!("{name}: {e}"),
                }
            }
            if !files.is_empty() {
                self.load_files("dropped files", files, true);
            }
        }
        #[cfg(target_arch = "wasm32")]
        {
            let inbox = self.inbox.clone();
            let ctx = ctx.clone();
            wasm_bindgen_futures::spawn_local(async move {
                let mut files = Files::new();
                for f in dropped {
                    let name = f.path().display().to_string();
                    match f.bytes_async().await.and_then(|b| expand(&name, b)) {
                        Ok(more) => files.extend(more),
                        Err(e) => {
                            if let Ok(mut q) = inbox.lock() {
                                q.push(Incoming::Error(format!("{name}: {e}")));
                            }
                        }
                    }
                }
                // as natively: nothing readable keeps what is open, and the error stays shown
                if !files.is_empty()
                    && let Ok(mut q) = inbox.lock()
                {
                    q.push(Incoming::Files("dropped files".into(), files));
                }
                ctx.request_repaint();
            });
        }
    }

    /// The figures and export data of the current view.
    pub fn current(&self) -> Option<figures::Prepared> {
        match &self.tab {
            Tab::Table => {
                let opts = accuracy_table::Options {
                    excluded_seeds: self.excluded_seeds.clone(),
                    ..self.table.clone()
                };
                figures::prepare_table(&self.index, &opts)
            }
            Tab::Training => figures::prepare_training(&self.index, &self.training),
            Tab::Experiment(path) => {
                let r =
                    figures::without_seeds(self.index.experiments.get(path)?, &self.excluded_seeds);
                Some(figures::prepare_experiment(path, &r, &self.view))
            }
        }
    }

    fn top_bar(&mut self, ui: &mut egui::Ui) {
        ui.horizontal_wrapped(|ui| {
            ui.strong("steerlab viewer");
            ui.separator();
            #[cfg(not(target_arch = "wasm32"))]
            {
                ui.label("Folder:");
                let edit = ui.add(
                    egui::TextEdit::singleline(&mut self.open_path)
                        .desired_width(280.0)
                        .hint_text("/path/to/results"),
                );
                let enter = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                if ui.button("Open").clicked() || enter {
                    let p = std::path::PathBuf::from(self.open_path.trim());
                    if p.extension().is_some_and(|e| e == "zip") {
                        self.open_zip(&p);
                    } else {
                        self.open_folder(&p);
                    }
                }
                let start = std::path::PathBuf::from(self.open_path.trim());
                let start = start.is_dir().then_some(start);
                if ui.button("Browse folder…").clicked() {
                    let mut d =
                        egui_file::FileDialog::select_folder().title("Choose a results folder");
                    if let Some(p) = &start {
                        d = d.initial_path(p);
                    }
                    d.open();
                    self.dialog = Some(d);
                }
                if ui.button("Open .zip…").clicked() {
                    let mut d = egui_file::FileDialog::open_file()
                        .title("Choose a results .zip")
                        .show_files_filter(Box::new(|p: &std::path::Path| {
                            p.extension().is_some_and(|e| e == "zip")
                        }));
                    if let Some(p) = start {
                        d = d.initial_path(p);
                    }
                    d.open();
                    self.dialog = Some(d);
                }
            }
            #[cfg(target_arch = "wasm32")]
            {
                if ui.button("Open folder…").clicked() {
                    crate::web::pick_files(self.inbox.clone(), true, ui.ctx().clone());
                }
                let zip = ui.button("Open .zip / files…");
                self.web_buttons
                    .insert("Open .zip / files…".into(), zip.rect);
                if zip.clicked() {
                    crate::web::pick_files(self.inbox.clone(), false, ui.ctx().clone());
                }
            }
            if ui
                .button("Example data")
                .on_hover_text("the deterministic fixture bundle of the `shared` crate")
                .clicked()
            {
                self.load_files("example data", shared::fixtures::bundle(), true);
            }
            ui.separator();
            ui.label(egui::RichText::new(&self.status).small());
        });
    }

    fn run_browser(&mut self, ui: &mut egui::Ui) {
        egui::ScrollArea::vertical().show(ui, |ui| {
            ui.heading("Results");
            if !self.source.is_empty() {
                ui.label(egui::RichText::new(&self.source).small().monospace());
            }
            if self.index.is_empty() && self.index.problems.is_empty() {
                ui.label("Nothing opened yet. Drop a folder or a .zip here.");
            }
            if ui
                .selectable_label(self.tab == Tab::Table, "Accuracy table")
                .clicked()
            {
                self.tab = Tab::Table;
            }
            if ui
                .selectable_label(self.tab == Tab::Training, "Training curves")
                .clicked()
            {
                self.tab = Tab::Training;
            }
            if !self.index.experiments.is_empty() {
                ui.separator();
                ui.strong("Experiments");
                let entries: Vec<(String, String)> = self
                    .index
                    .experiments
                    .iter()
                    .map(|(p, r)| (p.clone(), format!("{} · {}", r.kind(), r.subject())))
                    .collect();
                for (path, label) in entries {
                    let selected = self.tab == Tab::Experiment(path.clone());
                    if ui
                        .selectable_label(selected, label)
                        .on_hover_text(&path)
                        .clicked()
                    {
                        self.tab = Tab::Experiment(path);
                    }
                }
            }
            ui.separator();
            egui::CollapsingHeader::new(format!(
                "Evaluations ({} summaries)",
                self.index.summaries.len()
            ))
            .default_open(true)
            .show(ui, |ui| {
                // model → setup → run → checkpoint → (temperature, seeds, benchmarks)
                type Leaf = (
                    std::collections::BTreeSet<u64>,
                    std::collections::BTreeSet<String>,
                );
                let mut tree: std::collections::BTreeMap<
                    String,
                    std::collections::BTreeMap<String, std::collections::BTreeMap<String, Leaf>>,
                > = Default::default();
                for s in self.index.summaries.values() {
                    let c = &s.context;
                    let leaf = format!(
                        "{}{} · T={}",
                        if c.run.is_empty() {
                            String::new()
                        } else {
                            format!("{} ", c.run)
                        },
                        c.checkpoint
                            .map(|k| format!("ckpt {k}"))
                            .unwrap_or_else(|| "no checkpoint".into()),
                        s.temperature
                    );
                    let e = tree
                        .entry(c.model.clone())
                        .or_default()
                        .entry(c.setup.clone())
                        .or_default()
                        .entry(leaf)
                        .or_default();
                    e.0.insert(s.seed);
                    e.1.insert(s.benchmark.clone());
                }
                for (model, setups) in &tree {
                    egui::CollapsingHeader::new(model)
                        .id_salt(("model", model))
                        .show(ui, |ui| {
                            for (setup, leaves) in setups {
                                egui::CollapsingHeader::new(shared::aggregate::setup_display(
                                    setup,
                                ))
                                .id_salt(("setup", model, setup))
                                .show(ui, |ui| {
                                    for (leaf, (seeds, benches)) in leaves {
                                        let seeds: Vec<String> =
                                            seeds.iter().map(u64::to_string).collect();
                                        ui.label(format!(
                                            "{leaf} · seeds {} · {} benchmarks",
                                            seeds.join(","),
                                            benches.len()
                                        ))
                                        .on_hover_text(
                                            benches.iter().cloned().collect::<Vec<_>>().join(", "),
                                        );
                                    }
                                });
                            }
                        });
                }
                if !self.index.record_files.is_empty() {
                    ui.label(format!(
                        "{} per-problem record file(s)",
                        self.index.record_files.len()
                    ));
                }
            });
            egui::CollapsingHeader::new(format!(
                "Training runs ({})",
                self.index.training_runs.len()
            ))
            .default_open(true)
            .show(ui, |ui| {
                let runs: Vec<(String, Option<u64>, usize)> = self
                    .index
                    .training_runs
                    .values()
                    .map(|r| (r.dir.clone(), r.seed, r.lines.len()))
                    .collect();
                for (dir, seed, steps) in runs {
                    let mut shown = !self.training.hidden_runs.contains(&dir);
                    let label = format!(
                        "{} · seed {} · {steps} steps",
                        training_curves::run_label(&dir),
                        seed.map(|s| s.to_string()).unwrap_or("?".into())
                    );
                    if ui.checkbox(&mut shown, label).on_hover_text(&dir).changed() {
                        if shown {
                            self.training.hidden_runs.remove(&dir);
                        } else {
                            self.training.hidden_runs.insert(dir.clone());
                        }
                        self.tab = Tab::Training;
                    }
                }
            });
            egui::CollapsingHeader::new(format!("Steering vectors ({})", self.index.vectors.len()))
                .show(ui, |ui| {
                    for (path, h) in &self.index.vectors {
                        let meta = match &h.meta {
                            Ok(m) => format!(
                                "{} · {} · step {} · seed {}",
                                m.model, m.setup, m.step, m.seed
                            ),
                            Err(e) => e.to_string(),
                        };
                        ui.label(format!("{:?} {} · {meta}", h.shape, h.dtype))
                            .on_hover_text(path);
                    }
                });
            if !self.index.problems.is_empty() {
                egui::CollapsingHeader::new(
                    egui::RichText::new(format!(
                        "⚠ Unreadable files ({})",
                        self.index.problems.len()
                    ))
                    .color(ui.visuals().warn_fg_color),
                )
                .default_open(true)
                .show(ui, |ui| {
                    for (path, msg) in &self.index.problems {
                        ui.label(egui::RichText::new(path).monospace().small())
                            .on_hover_text(msg);
                        ui.label(
                            egui::RichText::new(msg)
                                .small()
                                .color(ui.visuals().warn_fg_color),
                        );
                    }
                });
            }
        });
    }

    fn options_bar(&mut self, ui: &mut egui::Ui) {
        ui.horizontal_wrapped(|ui| match self.tab.clone() {
            Tab::Table => {
                metric_combo(ui, "table-metric", &mut self.table.metric);
                ui.checkbox(&mut self.table.best_only, "best checkpoint only");
                let mut temps: Vec<f64> = self
                    .index
                    .summaries
                    .values()
                    .map(|s| s.temperature)
                    .collect();
                temps.sort_by(f64::total_cmp);
                temps.dedup();
                let seeds = self.index.summaries.values().map(|s| s.seed).collect();
                self.seed_toggles(ui, seeds);
                egui::ComboBox::new("table-temp", "temperature")
                    .selected_text(
                        self.table
                            .temperature
                            .map_or("all temperatures".into(), |t| format!("T = {t}")),
                    )
                    .show_ui(ui, |ui| {
                        ui.selectable_value(&mut self.table.temperature, None, "all temperatures");
                        for t in temps {
                            ui.selectable_value(
                                &mut self.table.temperature,
                                Some(t),
                                format!("T = {t}"),
                            );
                        }
                    });
            }
            Tab::Training => {
                let available = training_curves::prepare(
                    &self.index,
                    &training_curves::Options {
                        metrics: vec![],
                        ..self.training.clone()
                    },
                )
                .available;
                ui.checkbox(
                    &mut self.training.merge_seeds,
                    "merge training seeds (mean ± std)",
                );
                ui.menu_button(format!("metrics ({})", self.training.metrics.len()), |ui| {
                    for m in available {
                        let mut on = self.training.metrics.contains(&m);
                        if ui.checkbox(&mut on, &m).changed() {
                            if on {
                                self.training.metrics.push(m.clone());
                            } else {
                                self.training.metrics.retain(|x| *x != m);
                            }
                        }
                    }
                });
            }
            Tab::Experiment(path) => {
                let Some(r) = self.index.experiments.get(&path).cloned() else {
                    return;
                };
                match &r {
                    ExperimentResult::SeedAlignment(_) => {}
                    ExperimentResult::TokenEffects(t) => {
                        let o = &mut self.view.tokens;
                        let mut groupings: Vec<&str> =
                            t.groups.iter().map(|g| g.by.as_str()).collect();
                        groupings.sort_unstable();
                        groupings.dedup();
                        egui::ComboBox::new("token-grouping", "grouping")
                            .selected_text(&o.grouping)
                            .show_ui(ui, |ui| {
                                for g in groupings {
                                    ui.selectable_value(&mut o.grouping, g.to_owned(), g);
                                }
                            });
                        ui.selectable_value(&mut o.sort, token_effects::Sort::Max, "by max");
                        ui.selectable_value(&mut o.sort, token_effects::Sort::Mean, "by mean");
                        ui.checkbox(&mut o.only_repeated, "only tokens seen more than once");
                        ui.add(egui::Slider::new(&mut o.top_k, 3..=40).text("boxes"));
                        if t.samples.len() > 1 {
                            egui::ComboBox::new("token-sample", "completion")
                                .selected_text(o.sample.to_string())
                                .show_ui(ui, |ui| {
                                    for i in 0..t.samples.len() {
                                        ui.selectable_value(&mut o.sample, i, i.to_string());
                                    }
                                });
                        }
                    }
                    ExperimentResult::LogitLens(l) => {
                        egui::ComboBox::new("logit-layer", "layer")
                            .selected_text(
                                self.view
                                    .logit_layer
                                    .map_or("all layers".into(), |l| format!("layer {l}")),
                            )
                            .show_ui(ui, |ui| {
                                ui.selectable_value(&mut self.view.logit_layer, None, "all layers");
                                for layer in l.layers.iter().map(|x| x.layer) {
                                    ui.selectable_value(
                                        &mut self.view.logit_layer,
                                        Some(layer),
                                        format!("layer {layer}"),
                                    );
                                }
                            });
                    }
                    _ => {
                        let benches = figures::benches_of(&r);
                        let choice = &mut self.view.bench;
                        if !benches.contains(&choice.bench) {
                            choice.bench = AVERAGE.into();
                        }
                        egui::ComboBox::new("bench", "benchmark")
                            .selected_text(shared::benchmarks::display_name(&choice.bench))
                            .show_ui(ui, |ui| {
                                for b in benches {
                                    let name = shared::benchmarks::display_name(&b);
                                    ui.selectable_value(&mut choice.bench, b, name);
                                }
                            });
                        metric_combo(ui, "exp-metric", &mut choice.metric);
                        self.seed_toggles(ui, figures::seeds_of(&r));
                        if matches!(r, ExperimentResult::HeadPatching(_)) {
                            ui.selectable_value(
                                &mut self.view.head_view,
                                head_patching::View::PerProjType,
                                "per projection type",
                            );
                            ui.selectable_value(
                                &mut self.view.head_view,
                                head_patching::View::Combined { inverse: false },
                                "combined q/k/v",
                            );
                            ui.selectable_value(
                                &mut self.view.head_view,
                                head_patching::View::Combined { inverse: true },
                                "combined inverse",
                            );
                        }
                    }
                }
            }
        });
    }

    fn seed_toggles(&mut self, ui: &mut egui::Ui, seeds: std::collections::BTreeSet<u64>) {
        if seeds.len() < 2 {
            return;
        }
        ui.label("eval seeds:");
        for seed in seeds {
            let mut on = !self.excluded_seeds.contains(&seed);
            if ui.checkbox(&mut on, seed.to_string()).changed() {
                if on {
                    self.excluded_seeds.remove(&seed);
                } else {
                    self.excluded_seeds.insert(seed);
                }
            }
        }
    }

    fn export_bar(&mut self, ui: &mut egui::Ui, prepared: &figures::Prepared) {
        ui.horizontal_wrapped(|ui| {
            ui.label("Export:");
            if let Some(rect) = self.figures_rect
                && ui
                    .button("PNG (screen)")
                    .on_hover_text("the figures as drawn on screen")
                    .clicked()
            {
                let inbox = self.inbox.clone();
                let ctx = ui.ctx().clone();
                let ppp = ctx.pixels_per_point();
                let name = format!("{}-screen.png", prepared.id);
                ui.ctx().request_screenshot(move |image| {
                    let item = match crate::draw_egui::encode_png(&image.region(&rect, Some(ppp))) {
                        Ok(bytes) => Incoming::Png(name, bytes),
                        Err(e) => Incoming::Error(format!("PNG: {e}")),
                    };
                    if let Ok(mut q) = inbox.lock() {
                        q.push(item);
                    }
                    ctx.request_repaint();
                });
            }
            #[cfg(not(target_arch = "wasm32"))]
            {
                ui.add(egui::Slider::new(&mut self.export_scale, 1.0..=4.0).text("PNG scale"));
                ui.add(egui::TextEdit::singleline(&mut self.export_dir).desired_width(160.0));
                for (label, format) in [
                    ("PNG", crate::export::Format::Png),
                    ("SVG", crate::export::Format::Svg),
                ] {
                    if ui.button(format!("{label} + CSV + JSON")).clicked() {
                        let out = std::path::PathBuf::from(&self.export_dir);
                        self.status = match crate::export::write_prepared(
                            prepared,
                            &out,
                            format,
                            f64::from(self.export_scale),
                        ) {
                            Ok(r) if r.errors.is_empty() => {
                                format!("wrote {} file(s) to {}", r.written.len(), out.display())
                            }
                            Ok(r) => format!(
                                "wrote {} file(s) to {}; could not draw: {}",
                                r.written.len(),
                                out.display(),
                                r.errors.join("; ")
                            ),
                            Err(e) => e,
                        };
                    }
                }
            }
            #[cfg(target_arch = "wasm32")]
            {
                for (suffix, text) in &prepared.csv {
                    if ui.button(format!("CSV{suffix}")).clicked() {
                        crate::web::download(
                            &format!("{}{suffix}.csv", prepared.id),
                            text.as_bytes(),
                            "text/csv",
                        );
                    }
                }
                if ui.button("JSON").clicked() {
                    crate::web::download(
                        &format!("{}.json", prepared.id),
                        prepared.json.as_bytes(),
                        "application/json",
                    );
                }
                ui.add(egui::Slider::new(&mut self.export_scale, 1.0..=4.0).text("PNG scale"));
                let svg = ui
                    .button("SVG")
                    .on_hover_text("every figure of the view as SVG");
                let png = ui
                    .button("PNG")
                    .on_hover_text("every figure of the view as PNG");
                self.web_buttons.insert("SVG".into(), svg.rect);
                self.web_buttons.insert("PNG".into(), png.rect);
                if svg.clicked() || png.clicked() {
                    let mut failed = Vec::new();
                    for fig in &prepared.figures {
                        let stem = prepared.figure_stem(fig);
                        match crate::draw_plotters::to_svg(fig, 1.0) {
                            Ok(text) if svg.clicked() => crate::web::download(
                                &format!("{stem}.svg"),
                                text.as_bytes(),
                                "image/svg+xml",
                            ),
                            Ok(text) => crate::web::download_png(
                                &text,
                                &format!("{stem}.png"),
                                f64::from(self.export_scale),
                            ),
                            Err(e) => failed.push(format!("{stem}: {e}")),
                        }
                    }
                    self.status = if failed.is_empty() {
                        format!("downloaded {} figure(s)", prepared.figures.len())
                    } else {
                        format!("could not draw {}", failed.join("; "))
                    };
                }
            }
        });
    }
}

/// A dropped or picked file: a `.zip` is unpacked, anything else kept as one file.
fn expand(name: &str, bytes: Vec<u8>) -> Result<Files, String> {
    if name.ends_with(".zip") {
        crate::source::from_zip(&bytes)
    } else {
        Ok(vec![(
            name.rsplit('/').next().unwrap_or(name).to_owned(),
            bytes,
        )])
    }
}

fn metric_combo(ui: &mut egui::Ui, id: &str, metric: &mut Metric) {
    egui::ComboBox::new(id, "metric")
        .selected_text(metric.label())
        .show_ui(ui, |ui| {
            for m in Metric::ALL {
                ui.selectable_value(metric, m, m.label());
            }
        });
}

/// Draws the figures of a prepared view (used by the app and by tests).
pub fn show_figures(ui: &mut egui::Ui, figures: &[Figure], id: &str) {
    for (i, f) in figures.iter().enumerate() {
        crate::draw_egui::show(ui, f, &format!("{id}/{i}"));
        ui.add_space(12.0);
    }
}

impl eframe::App for ViewerApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.drain_inbox();
        self.handle_dropped(ctx);
        #[cfg(not(target_arch = "wasm32"))]
        {
            if let Ok(mut waker) = self.waker.lock()
                && waker.is_none()
            {
                *waker = Some(ctx.clone());
            }
            self.apply_watched_changes();
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.ui_body(ui);
    }

    #[cfg(target_arch = "wasm32")]
    fn as_any_mut(&mut self) -> Option<&mut dyn std::any::Any> {
        Some(&mut *self)
    }
}

impl ViewerApp {
    /// Draws the whole app into `ui` (also used by tests without eframe).
    pub fn ui_body(&mut self, ui: &mut egui::Ui) {
        self.drain_inbox();
        #[cfg(not(target_arch = "wasm32"))]
        self.show_dialog(&ui.ctx().clone());
        egui::Panel::top("top").show(ui, |ui| self.top_bar(ui));
        egui::Panel::left("browser")
            .resizable(true)
            .default_size(300.0)
            .show(ui, |ui| self.run_browser(ui));
        egui::CentralPanel::default().show(ui, |ui| {
            self.options_bar(ui);
            ui.separator();
            match self.current() {
                Some(prepared) => {
                    self.export_bar(ui, &prepared);
                    ui.separator();
                    let id = prepared.id.clone();
                    let out = egui::ScrollArea::vertical()
                        .id_salt("figures")
                        .show(ui, |ui| show_figures(ui, &prepared.figures, &id));
                    self.figures_rect = Some(out.inner_rect);
                }
                None => {
                    ui.label(match self.tab {
                        Tab::Table => {
                            "No evaluation summaries (`<bench>.summary.json`) in this results root."
                        }
                        Tab::Training => "No training runs (`metrics.jsonl`) in this results root.",
                        Tab::Experiment(_) => "This experiment file is no longer readable.",
                    });
                }
            }
        });
    }
}
