//! Browser entry point: `WebHandle` is exported to JavaScript and started from `web/index.html`.
//! Also the browser-only ways of loading results: `?url=` of a served `.zip` (or single result
//! file), picking a folder or files, and downloading exported CSV/JSON.

use wasm_bindgen::JsCast as _;
use wasm_bindgen::prelude::*;

use crate::app::{Inbox, Incoming};
use crate::source::Files;

/// A handle to the running web app, kept alive by the page's JavaScript.
#[wasm_bindgen]
pub struct WebHandle {
    runner: eframe::WebRunner,
}

#[wasm_bindgen]
impl WebHandle {
    /// Installs the logger; the app itself starts with [`WebHandle::start`].
    #[wasm_bindgen(constructor)]
    #[expect(clippy::new_without_default)]
    pub fn new() -> Self {
        eframe::WebLogger::init(log::LevelFilter::Info).ok();
        Self {
            runner: eframe::WebRunner::new(),
        }
    }

    /// Starts the viewer on `canvas`. The page's `?url=` parameter names a results bundle (`.zip`)
    /// or a single result file to load; `?example` loads the built-in example data; `?view=`
    /// selects a view (`table`, `training`, or an experiment kind such as `layers`).
    pub async fn start(&self, canvas: web_sys::HtmlCanvasElement) -> Result<(), JsValue> {
        let params = web_sys::window()
            .and_then(|w| w.location().search().ok())
            .and_then(|s| web_sys::UrlSearchParams::new_with_str(&s).ok());
        let url = params.as_ref().and_then(|p| p.get("url"));
        let example = params.as_ref().is_some_and(|p| p.has("example"));
        let view = params.as_ref().and_then(|p| p.get("view"));
        self.runner
            .start(
                canvas,
                eframe::WebOptions::default(),
                Box::new(move |cc| {
                    let mut app = if example {
                        crate::ViewerApp::with_files("example data", shared::fixtures::bundle())
                    } else {
                        crate::ViewerApp::new()
                    };
                    if let Some(view) = view {
                        app.select_view(&view);
                    }
                    if let Some(url) = url {
                        let inbox = app.inbox();
                        let ctx = cc.egui_ctx.clone();
                        wasm_bindgen_futures::spawn_local(async move {
                            let item = match fetch_files(&url).await {
                                Ok(files) => Incoming::Files(url.clone(), files),
                                Err(e) => Incoming::Error(format!("could not load {url}: {e}")),
                            };
                            push(&inbox, item);
                            ctx.request_repaint();
                        });
                    }
                    Ok(Box::new(app))
                }),
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

    /// The app's status line ("…: 204 file(s) read · … experiments …"), read by the smoke test.
    pub fn status(&self) -> String {
        self.runner
            .app_mut::<crate::ViewerApp>()
            .map(|app| app.status().to_owned())
            .unwrap_or_default()
    }

    /// The centre of a button as last drawn, `[x, y]` in CSS pixels from the canvas' top-left
    /// corner (empty if it is not on screen): "Open .zip / files…", "SVG" or "PNG". The browser
    /// test clicks there, since egui draws on a canvas without DOM elements.
    pub fn button_center(&self, label: &str) -> Vec<f32> {
        self.runner
            .app_mut::<crate::ViewerApp>()
            .and_then(|app| app.button_center(label))
            .map(|p| vec![p.x, p.y])
            .unwrap_or_default()
    }

    /// Whether the app has panicked.
    pub fn has_panicked(&self) -> bool {
        self.runner.has_panicked()
    }
}

fn push(inbox: &Inbox, item: Incoming) {
    if let Ok(mut q) = inbox.lock() {
        q.push(item);
    }
}

fn js_err(e: JsValue) -> String {
    e.as_string().unwrap_or_else(|| format!("{e:?}"))
}

async fn fetch_bytes(url: &str) -> Result<Vec<u8>, String> {
    let window = web_sys::window().ok_or("no window")?;
    let resp: web_sys::Response = wasm_bindgen_futures::JsFuture::from(window.fetch_with_str(url))
        .await
        .map_err(js_err)?
        .dyn_into()
        .map_err(js_err)?;
    if !resp.ok() {
        return Err(format!("HTTP {}", resp.status()));
    }
    let buf = wasm_bindgen_futures::JsFuture::from(resp.array_buffer().map_err(js_err)?)
        .await
        .map_err(js_err)?;
    Ok(js_sys::Uint8Array::new(&buf).to_vec())
}

/// Fetches a `.zip` bundle (or one result file) and returns its files.
async fn fetch_files(url: &str) -> Result<Files, String> {
    let bytes = fetch_bytes(url).await?;
    let path = url.split(['?', '#']).next().unwrap_or(url);
    if path.ends_with(".zip") || bytes.starts_with(b"PK\x03\x04") {
        crate::source::from_zip(&bytes)
    } else {
        let name = path.rsplit('/').next().unwrap_or(path).to_owned();
        Ok(vec![(name, bytes)])
    }
}

/// Opens the browser's file picker (a folder when `folder`), reads the picked files (a `.zip` is
/// unpacked), pushes them into the inbox and wakes the app up.
pub fn pick_files(inbox: Inbox, folder: bool, ctx: egui::Context) {
    let Some(document) = web_sys::window().and_then(|w| w.document()) else {
        return;
    };
    let Ok(input) = document.create_element("input") else {
        return;
    };
    let Ok(input) = input.dyn_into::<web_sys::HtmlInputElement>() else {
        return;
    };
    input.set_type("file");
    input.set_multiple(true);
    if folder {
        let _ = input.set_attribute("webkitdirectory", "");
    }
    let picked = input.clone();
    let on_change = Closure::<dyn FnMut()>::new(move || {
        let Some(list) = picked.files() else { return };
        let files: Vec<web_sys::File> = (0..list.length()).filter_map(|i| list.get(i)).collect();
        let inbox = inbox.clone();
        let ctx = ctx.clone();
        wasm_bindgen_futures::spawn_local(async move {
            let mut out = Files::new();
            for f in files {
                let rel = js_sys::Reflect::get(&f, &JsValue::from_str("webkitRelativePath"))
                    .ok()
                    .and_then(|v| v.as_string())
                    .unwrap_or_default();
                let name = if rel.is_empty() { f.name() } else { rel };
                if !name.ends_with(".zip") && !shared::results::wants_bytes(&name) {
                    out.push((name, Vec::new()));
                    continue;
                }
                match wasm_bindgen_futures::JsFuture::from(f.array_buffer()).await {
                    Ok(buf) => {
                        let bytes = js_sys::Uint8Array::new(&buf).to_vec();
                        if name.ends_with(".zip") {
                            match crate::source::from_zip(&bytes) {
                                Ok(z) => out.extend(z),
                                Err(e) => push(&inbox, Incoming::Error(format!("{name}: {e}"))),
                            }
                        } else {
                            out.push((name, bytes));
                        }
                    }
                    Err(e) => push(&inbox, Incoming::Error(format!("{name}: {}", js_err(e)))),
                }
            }
            let label = if folder {
                "picked folder"
            } else {
                "picked files"
            };
            push(
                &inbox,
                Incoming::Files(label.into(), crate::source::strip_common_root(out)),
            );
            ctx.request_repaint();
        });
    });
    input.set_onchange(Some(on_change.as_ref().unchecked_ref()));
    on_change.forget();
    input.click();
}

#[wasm_bindgen(inline_js = r##"
export function svg_to_png(svg, name, scale) {
  // The browser rasterises the SVG (its own fonts), at `scale` times its size, into a PNG download.
  const url = URL.createObjectURL(new Blob([svg], { type: "image/svg+xml" }));
  const img = new Image();
  img.onload = () => {
    const canvas = document.createElement("canvas");
    canvas.width = Math.round(img.naturalWidth * scale);
    canvas.height = Math.round(img.naturalHeight * scale);
    const g = canvas.getContext("2d");
    g.fillStyle = "#ffffff";
    g.fillRect(0, 0, canvas.width, canvas.height);
    g.drawImage(img, 0, 0, canvas.width, canvas.height);
    URL.revokeObjectURL(url);
    canvas.toBlob((blob) => {
      const a = document.createElement("a");
      a.href = URL.createObjectURL(blob);
      a.download = name;
      a.click();
      setTimeout(() => URL.revokeObjectURL(a.href), 10000);
    }, "image/png");
  };
  img.onerror = () => console.error("could not rasterise " + name);
  img.src = url;
}
"##)]
extern "C" {
    fn svg_to_png(svg: &str, name: &str, scale: f64);
}

/// Offers a figure as a PNG download named `name`: the browser rasterises its SVG at `scale`.
pub fn download_png(svg: &str, name: &str, scale: f64) {
    svg_to_png(svg, name, scale);
}

/// Offers `bytes` as a download named `name`.
pub fn download(name: &str, bytes: &[u8], mime: &str) {
    let Some(document) = web_sys::window().and_then(|w| w.document()) else {
        return;
    };
    let array = js_sys::Uint8Array::from(bytes);
    let parts = js_sys::Array::of1(&array);
    let options = web_sys::BlobPropertyBag::new();
    options.set_type(mime);
    let Ok(blob) = web_sys::Blob::new_with_u8_array_sequence_and_options(&parts, &options) else {
        return;
    };
    let Ok(url) = web_sys::Url::create_object_url_with_blob(&blob) else {
        return;
    };
    if let Ok(a) = document.create_element("a")
        && let Ok(a) = a.dyn_into::<web_sys::HtmlAnchorElement>()
    {
        a.set_href(&url);
        a.set_download(name);
        a.click();
    }
    let _ = web_sys::Url::revoke_object_url(&url);
}
