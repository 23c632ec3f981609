//! Browser entry point: `WebHandle` is exported to JavaScript and started from `web/index.html`.
//! Also the browser-only ways of loading results: `?url=` of a served `.zip` (or single result
//! file), picking a folder or files, dropping a folder, and downloading exported CSV/JSON.

use wasm_bindgen::JsCast;
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
                    listen_for_folder_drops(app.inbox(), cc.egui_ctx.clone());
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
        let files = (0..list.length())
            .filter_map(|i| list.get(i))
            .map(|f| {
                let rel = js_sys::Reflect::get(&f, &JsValue::from_str("webkitRelativePath"))
                    .ok()
                    .and_then(|v| v.as_string())
                    .unwrap_or_default();
                (if rel.is_empty() { f.name() } else { rel }, f)
            })
            .collect();
        let label = if folder {
            "picked folder"
        } else {
            "picked files"
        };
        wasm_bindgen_futures::spawn_local(load_files(inbox.clone(), ctx.clone(), label, files));
    });
    input.set_onchange(Some(on_change.as_ref().unchecked_ref()));
    on_change.forget();
    input.click();
}

/// Reads picked or dropped files, each named by its path (a folder's name first, as in
/// `webkitRelativePath`), into the inbox and wakes the app up: a `.zip` is unpacked, a file that
/// the results index does not read is kept without its bytes, and failures are reported.
async fn load_files(
    inbox: Inbox,
    ctx: egui::Context,
    label: &'static str,
    files: Vec<(String, web_sys::File)>,
) {
    let mut out = Files::new();
    for (name, f) in files {
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
    push(
        &inbox,
        Incoming::Files(label.into(), crate::source::strip_common_root(out)),
    );
    ctx.request_repaint();
}

/// Reads a dropped folder. eframe hands the app only the dropped files, and a folder among them
/// has no bytes, so a capture-phase `drop` listener on the window takes over every drop that holds
/// a folder: it walks the dropped entries and loads their files with paths relative to the drop,
/// as "Open folder…" does. A drop of files alone is left to eframe.
fn listen_for_folder_drops(inbox: Inbox, ctx: egui::Context) {
    let Some(window) = web_sys::window() else {
        return;
    };
    let on_drop =
        Closure::<dyn FnMut(web_sys::DragEvent)>::new(move |event: web_sys::DragEvent| {
            let Some(items) = event.data_transfer().map(|d| d.items()) else {
                return;
            };
            // entries exist only while the event is dispatched: take them now, read them later
            let entries: Vec<web_sys::FileSystemEntry> = (0..items.length())
                .filter_map(|i| items.get(i)?.webkit_get_as_entry().ok().flatten())
                .collect();
            if !entries.iter().any(|e| e.is_directory()) {
                return;
            }
            event.prevent_default();
            event.stop_propagation();
            // eframe's own drop handler would end its drag hover; a `dragleave` does that too
            if let (Some(target), Ok(leave)) =
                (event.target(), web_sys::DragEvent::new("dragleave"))
            {
                let _ = target.dispatch_event(&leave);
            }
            let (inbox, ctx) = (inbox.clone(), ctx.clone());
            wasm_bindgen_futures::spawn_local(async move {
                let files = entry_files(&inbox, entries).await;
                load_files(inbox, ctx, "dropped folder", files).await;
            });
        });
    let _ = window.add_event_listener_with_callback_and_bool(
        "drop",
        on_drop.as_ref().unchecked_ref(),
        true,
    );
    on_drop.forget();
}

/// The files below dropped entries, each with its path from the drop (`folder/sub/file`), sorted;
/// a folder or file that cannot be read is reported through the inbox.
async fn entry_files(
    inbox: &Inbox,
    mut entries: Vec<web_sys::FileSystemEntry>,
) -> Vec<(String, web_sys::File)> {
    let mut out = Vec::new();
    while let Some(entry) = entries.pop() {
        let path = entry.full_path().trim_start_matches('/').to_owned();
        let read = if entry.is_directory() {
            let reader = entry
                .unchecked_ref::<web_sys::FileSystemDirectoryEntry>()
                .create_reader();
            // readEntries answers in batches until an empty one
            loop {
                let batch = callback(|ok, err| {
                    if let Err(e) = reader.read_entries_with_callback_and_callback(ok, err) {
                        let _ = err.call1(&JsValue::NULL, &e);
                    }
                })
                .await
                .map(|b| js_sys::Array::from(&b));
                match batch {
                    Ok(b) if b.length() == 0 => break Ok(()),
                    Ok(b) => entries.extend(b.iter().map(JsCast::unchecked_into)),
                    Err(e) => break Err(e),
                }
            }
        } else {
            callback(|ok, err| {
                entry
                    .unchecked_ref::<web_sys::FileSystemFileEntry>()
                    .file_with_callback_and_callback(ok, err);
            })
            .await
            .map(|f| out.push((path.clone(), f.unchecked_into())))
        };
        if let Err(e) = read {
            push(inbox, Incoming::Error(format!("{path}: {e}")));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Awaits a browser API that answers through callbacks: `call` starts it with its success and
/// error callbacks.
async fn callback(
    call: impl FnOnce(&js_sys::Function, &js_sys::Function),
) -> Result<JsValue, String> {
    let mut call = Some(call);
    let promise = js_sys::Promise::new(&mut |ok, err| {
        if let Some(call) = call.take() {
            call(&ok, &err);
        }
    });
    wasm_bindgen_futures::JsFuture::from(promise)
        .await
        .map_err(js_err)
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
