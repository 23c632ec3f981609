//! Browser entry point: `WebHandle` is exported to JavaScript and started from `web/index.html`.

use wasm_bindgen::prelude::*;

/// A handle to the running web app, kept alive by the page's JavaScript.
#[wasm_bindgen]
pub struct WebHandle {
    runner: eframe::WebRunner,
}

#[wasm_bindgen]
impl WebHandle {
    /// Installs the panic hook and the logger; the app itself starts with [`WebHandle::start`].
    #[wasm_bindgen(constructor)]
    #[expect(clippy::new_without_default)]
    pub fn new() -> Self {
        eframe::WebLogger::init(log::LevelFilter::Info).ok();
        Self { runner: eframe::WebRunner::new() }
    }

    /// Starts the viewer on `canvas`; the page's `?url=` parameter names a results bundle to load.
    pub async fn start(&self, canvas: web_sys::HtmlCanvasElement) -> Result<(), JsValue> {
        let url = web_sys::window()
            .and_then(|w| w.location().search().ok())
            .and_then(|s| web_sys::UrlSearchParams::new_with_str(&s).ok())
            .and_then(|p| p.get("url"));
        self.runner
            .start(
                canvas,
                eframe::WebOptions::default(),
                Box::new(move |_cc| Ok(Box::new(crate::ViewerApp::new(url)))),
            )
            .await
    }

    /// Stops the app and frees the canvas.
    pub fn destroy(&self) {
        self.runner.destroy();
    }

    /// The panic message, if the app has panicked (read by the smoke test).
    pub fn panic_message(&self) -> Option<String> {
        self.runner.panic_summary().map(|s| s.message())
    }

    /// Whether the app has panicked.
    pub fn has_panicked(&self) -> bool {
        self.runner.has_panicked()
    }
}
