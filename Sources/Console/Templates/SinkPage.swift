/// A sink's Messages tab: in flight, waiting, failing, delivered, cancelled.
enum SinkTemplate {
    static let text = #"""
<h1>{{name}} <span class="muted">→ {{topic}}</span></h1>
<nav class="tabs">
  {{#tabs}}<a href="/sinks/{{sink}}?state={{state}}" class="{{#active}}active{{/active}}">{{label}} <span class="muted">{{count}}</span></a>{{/tabs}}
</nav>
{{#notice}}<div class="notice">{{notice}}</div>{{/notice}}
{{#hasMessages}}
<div class="table-wrap">
<table class="messages" data-state="{{state}}">
  <thead><tr><th>message</th><th>table</th><th>action</th><th>key</th><th>deliver count</th>
  {{#showsError}}<th>last error</th>{{/showsError}}{{#showsNextAttempt}}<th>next attempt</th>{{/showsNextAttempt}}
  {{#showsOffset}}<th>partition</th><th>offset</th>{{/showsOffset}}{{#showsReason}}<th>reason</th>{{/showsReason}}<th>size</th></tr></thead>
  <tbody>
  {{#messages}}
  <tr class="row" data-href="/sinks/{{sink}}/messages/{{id}}" data-id="{{id}}">
    <td><a href="/sinks/{{sink}}/messages/{{id}}">{{id}}</a></td><td>{{table}}</td><td>{{action}}</td><td>{{key}}</td>
    <td class="deliver-count">{{deliverCount}}</td>
    {{#showsError}}<td class="error">{{lastError}}</td>{{/showsError}}{{#showsNextAttempt}}<td>{{nextAttempt}}</td>{{/showsNextAttempt}}
    {{#showsOffset}}<td>{{partition}}</td><td>{{offset}}</td>{{/showsOffset}}{{#showsReason}}<td>{{reason}}</td>{{/showsReason}}<td>{{size}}</td>
  </tr>
  {{/messages}}
  </tbody>
</table>
</div>
{{/hasMessages}}
{{^hasMessages}}<p class="muted">No {{stateLabel}} messages.</p>{{/hasMessages}}
{{#hasBackfills}}
<h2>Backfills</h2>
<div class="table-wrap">
<table class="backfills">
  <thead><tr><th>table</th><th>state</th><th>progress</th><th>rows</th><th>sent</th><th>started</th></tr></thead>
  <tbody>
  {{#backfills}}
  <tr data-id="{{id}}"><td>{{table}}</td><td><span class="badge {{state}}">{{state}}</span>{{#lastError}} <span class="bad">{{lastError}}</span>{{/lastError}}</td>
    <td><progress max="{{total}}" value="{{processed}}"></progress> {{percent}}%</td><td>{{processed}} / {{total}}</td><td>{{ingested}}</td><td>{{started}}</td></tr>
  {{/backfills}}
  </tbody>
</table>
</div>
{{/hasBackfills}}
"""#
}
