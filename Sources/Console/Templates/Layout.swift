/// The frame of every page: header, styles, and the few lines of JS that keep `#live` current.
enum LayoutTemplate {
    static let text = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{title}} · Sluice</title>
<style>
  :root { --ink:#1d2330; --muted:#667085; --line:#e4e7ec; --bg:#f7f8fa; --ok:#067647; --bad:#b42318; --warn:#b54708; --accent:#2e5bff; }
  * { box-sizing: border-box; }
  body { margin:0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color:var(--ink); background:var(--bg); }
  header { display:flex; gap:1rem; align-items:center; padding:.7rem 1.2rem; background:#111827; color:#fff; flex-wrap:wrap; }
  header a { color:#fff; text-decoration:none; } header .brand { font-weight:700; letter-spacing:.02em; }
  header form { margin-left:auto; } header .role { color:#d0d5dd; font-size:.85rem; } header button { background:none; border:1px solid #475467; color:#d0d5dd; border-radius:6px; padding:.2rem .6rem; cursor:pointer; }
  main { max-width:1200px; margin:0 auto; padding:1.2rem; }
  h1 { font-size:1.35rem; margin:.2rem 0 1rem; } h2 { font-size:1.05rem; margin:1.4rem 0 .6rem; }
  .cards { display:grid; grid-template-columns:repeat(auto-fill, minmax(270px, 1fr)); gap:1rem; }
  .card { background:#fff; border:1px solid var(--line); border-radius:10px; padding:1rem; }
  .card h3 { margin:0 0 .5rem; font-size:1rem; } .card a.title { color:var(--ink); }
  .muted { color:var(--muted); } .ok { color:var(--ok); } .bad { color:var(--bad); } .warn { color:var(--warn); }
  dl.facts { display:grid; grid-template-columns:max-content 1fr; gap:.25rem 1rem; margin:0; }
  dl.facts dt { color:var(--muted); } dl.facts dd { margin:0; overflow-wrap:anywhere; }
  .counts { display:grid; grid-template-columns:repeat(3, 1fr); gap:.4rem; margin-top:.6rem; }
  .counts div { background:var(--bg); border-radius:6px; padding:.35rem .5rem; } .counts b { display:block; font-size:1.15rem; }
  nav.tabs { display:flex; gap:.3rem; flex-wrap:wrap; border-bottom:1px solid var(--line); margin-bottom:.8rem; }
  nav.tabs a { padding:.45rem .8rem; text-decoration:none; color:var(--muted); border-bottom:2px solid transparent; }
  nav.tabs a.active { color:var(--ink); border-color:var(--accent); font-weight:600; }
  .table-wrap { overflow-x:auto; background:#fff; border:1px solid var(--line); border-radius:10px; }
  table { border-collapse:collapse; width:100%; min-width:640px; }
  th, td { text-align:left; padding:.5rem .7rem; border-bottom:1px solid var(--line); vertical-align:top; font-size:.92rem; }
  th { color:var(--muted); font-weight:600; background:#fbfbfc; } tr.row { cursor:pointer; } tr.row:hover td { background:#f5f8ff; }
  td.error { color:var(--bad); max-width:28rem; overflow-wrap:anywhere; } td a { color:var(--accent); }
  pre { background:#0f172a; color:#e2e8f0; padding:1rem; border-radius:8px; white-space:pre-wrap; word-break:break-all; font-size:.85rem; }
  .actions { display:flex; gap:.6rem; margin:1rem 0; } .actions button { font:inherit; padding:.45rem 1rem; border-radius:7px; border:1px solid var(--line); cursor:pointer; }
  button.primary { background:var(--accent); color:#fff; border-color:var(--accent); } button.danger { background:#fff; color:var(--bad); border-color:#fda29b; }
  .badge { display:inline-block; padding:.05rem .5rem; border-radius:999px; font-size:.8rem; background:#eef2ff; }
  .badge.failing { background:#fee4e2; color:var(--bad); } .badge.delivered { background:#dcfae6; color:var(--ok); }
  .badge.cancelled { background:#f2f4f7; } .badge.completed { background:#dcfae6; color:var(--ok); } .badge.active { background:#eef2ff; color:var(--accent); } .badge.failed { background:#fee4e2; color:var(--bad); }
  progress { width:10rem; vertical-align:middle; } .badge.in_flight, .badge.waiting { background:#fef0c7; color:var(--warn); }
  .notice { padding:.6rem .9rem; border-radius:8px; background:#fff; border:1px solid var(--line); margin-bottom:1rem; }
  ol.errors li { margin-bottom:.4rem; overflow-wrap:anywhere; }
  form.login { max-width:360px; margin:3rem auto; background:#fff; padding:1.5rem; border-radius:10px; border:1px solid var(--line); }
  form.login input { width:100%; padding:.55rem; font:inherit; margin:.4rem 0 1rem; border:1px solid var(--line); border-radius:6px; }
  @media (max-width: 640px) { main { padding:.7rem; } .counts { grid-template-columns:repeat(2, 1fr); } }
</style>
</head>
<body>
<header>
  <a class="brand" href="/">Sluice</a>
  {{#loggedIn}}<a href="/">Overview</a>{{#sinks}}<a href="/sinks/{{name}}">{{name}}</a>{{/sinks}}
  {{#ha}}<span class="role" id="role">{{role}} · {{instance}}{{#standby}}{{#leader}} · leader {{instance}}{{/leader}}{{/standby}}{{#leader}} · lease until {{leaseExpiresAt}}{{/leader}}</span>{{/ha}}
  {{#canLogOut}}<form method="post" action="/logout"><button type="submit">Log out</button></form>{{/canLogOut}}{{/loggedIn}}
</header>
<main id="live">{{{body}}}</main>
{{#refresh}}
<script>
  // Keep the page current: fetch it again every 2 s and swap the live part in place.
  setInterval(async () => {
    try {
      const answer = await fetch(location.href, { credentials: "same-origin", cache: "no-store" });
      if (!answer.ok || answer.redirected) return;
      const page = new DOMParser().parseFromString(await answer.text(), "text/html");
      const fresh = page.getElementById("live");
      if (fresh) document.getElementById("live").innerHTML = fresh.innerHTML;
    } catch (_) {}
  }, 2000);
  document.addEventListener("click", (event) => {
    const row = event.target.closest("tr[data-href]");
    if (row && !event.target.closest("a, button")) location.href = row.dataset.href;
  });
</script>
{{/refresh}}
</body>
</html>
"""#
}
