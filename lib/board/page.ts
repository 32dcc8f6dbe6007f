/**
 * The board's page: a static shell and its stylesheet; lib/board/client/ fills it. System fonts only: the board
 * runs offline and loads nothing from elsewhere.
 */
export function boardPage(): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>llamapro board</title>
<link rel="stylesheet" href="/assets/board.css">
<script type="module" src="/assets/board/client/board.js"></script>
</head>
<body>
<header class="top">
  <span class="brand">llamapro <b>board</b></span>
  <span id="roots" class="roots"></span>
  <span id="live" class="live" data-state="connecting">connecting…</span>
</header>
<div class="layout">
  <nav class="sidebar">
    <button id="compare-link" class="nav-item compare" hidden>Compare runs</button>
    <ul id="run-list" class="run-list"></ul>
  </nav>
  <main id="main">
    <div id="page-error" class="page-error" hidden></div>
    <section id="empty-state" class="empty" hidden></section>
    <section id="run-view" hidden></section>
    <section id="compare-view" hidden></section>
  </main>
</div>
</body>
</html>
`
}

export const BOARD_CSS = `
:root { --bg: #f6f7f9; --panel: #fff; --ink: #1d2330; --muted: #667085; --line: #e4e7ec; --accent: #1f77b4;
  --run: #1f8f4e; --fin: #3559c7; --int: #b7791f; --stop: #c2410c; }
* { box-sizing: border-box; }
[hidden] { display: none !important; }
.page-error { background: #fff1f0; border: 1px solid #f3b4ae; color: #a4221a; padding: 10px 14px; border-radius: 8px;
  margin-bottom: 14px; }
body { margin: 0; background: var(--bg); color: var(--ink);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", Helvetica, Arial, sans-serif; }
.top { display: flex; align-items: center; gap: 16px; height: 48px; padding: 0 20px; background: #151a24;
  color: #e8ebf2; }
.brand { font-size: 16px; letter-spacing: .2px; } .brand b { color: #7fb8ff; font-weight: 600; }
.roots { color: #9aa4b5; font-size: 12.5px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; flex: 1; }
.live { font-size: 12.5px; color: #9aa4b5; }
.live[data-state="live"]::before { content: "●"; color: #3ecf75; margin-right: 6px; }
.live[data-state="offline"]::before { content: "●"; color: #e5484d; margin-right: 6px; }
.layout { display: grid; grid-template-columns: 290px 1fr; min-height: calc(100vh - 48px); }
.sidebar { background: var(--panel); border-right: 1px solid var(--line); padding: 14px 10px; overflow-y: auto; }
.nav-item { display: block; width: 100%; text-align: left; border: 1px solid var(--line); background: #fafbfc;
  border-radius: 8px; padding: 8px 10px; margin-bottom: 10px; font: inherit; cursor: pointer; color: var(--ink); }
.nav-item.active { border-color: var(--accent); background: #eef5fc; }
.run-list { list-style: none; margin: 0; padding: 0; }
.run { padding: 9px 10px; border-radius: 8px; cursor: pointer; border: 1px solid transparent; margin-bottom: 4px; }
.run:hover { background: #f2f4f7; }
.run.active { background: #eef5fc; border-color: #c6dcf2; }
.run .name { font-weight: 600; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.run .meta { display: flex; justify-content: space-between; color: var(--muted); font-size: 12px; margin-top: 2px; }
.bar { height: 4px; background: var(--line); border-radius: 2px; margin-top: 6px; overflow: hidden; }
.bar > div { height: 100%; background: var(--accent); }
.pill { display: inline-block; font-size: 11.5px; font-weight: 600; padding: 1px 8px; border-radius: 10px; color: #fff;
  text-transform: lowercase; vertical-align: middle; }
.pill[data-status="running"] { background: var(--run); } .pill[data-status="finished"] { background: var(--fin); }
.pill[data-status="interrupted"] { background: var(--int); } .pill[data-status="stopped"] { background: var(--stop); }
main { padding: 20px 26px 40px; min-width: 0; }
.empty { max-width: 640px; margin: 60px auto; background: var(--panel); border: 1px solid var(--line);
  border-radius: 12px; padding: 28px 32px; }
.empty h1 { font-size: 20px; margin-top: 0; }
.empty code { background: #f2f4f7; padding: 1px 5px; border-radius: 4px; }
.run-head { display: flex; align-items: baseline; gap: 12px; flex-wrap: wrap; }
.run-head h1 { font-size: 21px; margin: 0; }
.sub { color: var(--muted); font-size: 12.5px; margin-top: 4px; overflow-wrap: anywhere; }
.progress { display: flex; align-items: center; gap: 14px; margin: 14px 0 16px; }
.progress .bar { flex: 1; height: 8px; margin: 0; border-radius: 4px; }
.progress .text { color: var(--muted); font-variant-numeric: tabular-nums; white-space: nowrap; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(128px, 1fr)); gap: 12px; margin-bottom: 18px; }
.card { background: var(--panel); border: 1px solid var(--line); border-radius: 10px; padding: 10px 14px;
  min-width: 0; }
.card .label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .4px; }
.card .value { font-size: 20px; font-weight: 600; font-variant-numeric: tabular-nums; overflow-wrap: anywhere; }
.card .hint { color: var(--muted); font-size: 12px; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(460px, 1fr)); gap: 14px; }
.chart { background: var(--panel); border: 1px solid var(--line); border-radius: 10px; padding: 8px; margin: 0;
  min-width: 0; }
.chart svg { display: block; width: 100%; height: auto; }
.chart .none { color: var(--muted); padding: 40px 16px; text-align: center; }
.chart figcaption { color: var(--muted); font-size: 12px; padding: 2px 8px 4px; }
.panes { display: grid; grid-template-columns: 1fr 1fr; gap: 14px; margin-top: 14px; }
.pane { background: var(--panel); border: 1px solid var(--line); border-radius: 10px; padding: 10px 14px;
  min-width: 0; }
.pane h2 { font-size: 13px; margin: 0 0 8px; color: var(--muted); text-transform: uppercase; letter-spacing: .4px; }
.pane pre { margin: 0; max-height: 340px; overflow: auto;
  font: 12px/1.45 ui-monospace, "DejaVu Sans Mono", Menlo, monospace;
  white-space: pre-wrap; overflow-wrap: anywhere; }
table.compare { width: 100%; border-collapse: collapse; background: var(--panel); border: 1px solid var(--line);
  border-radius: 10px; margin: 14px 0 18px; font-variant-numeric: tabular-nums; }
table.compare th, table.compare td { text-align: left; padding: 7px 12px; border-bottom: 1px solid var(--line); }
table.compare th { color: var(--muted); font-weight: 600; font-size: 12px; text-transform: uppercase; }
@media (max-width: 900px) { .layout { grid-template-columns: 1fr; } .panes { grid-template-columns: 1fr; } }
`
