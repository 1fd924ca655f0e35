/// One message: its facts, its JSON, its error history; Retry and Cancel while it is failing.
enum MessageTemplate {
    static let text = #"""
<p><a href="/sinks/{{sink}}?state={{state}}">← {{sink}}</a></p>
<h1>Message {{id}} <span class="badge {{state}}" id="state">{{stateLabel}}</span></h1>
{{#notice}}<div class="notice">{{notice}}</div>{{/notice}}
{{#failing}}
<div class="actions">
  <form method="post" action="/sinks/{{sink}}/messages/{{id}}/retry"><button class="primary" type="submit">Retry now</button></form>
  <form method="post" action="/sinks/{{sink}}/messages/{{id}}/cancel"><button class="danger" type="submit">Cancel message</button></form>
</div>
{{/failing}}
<div class="card">
<dl class="facts">
  <dt>table</dt><dd>{{table}}</dd>
  <dt>action</dt><dd>{{action}}</dd>
  <dt>record_pks</dt><dd>{{recordPKs}}</dd>
  <dt>key</dt><dd>{{key}}</dd>
  <dt>topic</dt><dd>{{topic}}</dd>
  <dt>commit_lsn / idx</dt><dd>{{commitLSN}} / {{commitIdx}}</dd>
  <dt>deliver count</dt><dd id="deliver-count">{{deliverCount}}</dd>
  {{#lastError}}<dt>last error</dt><dd class="bad" id="last-error">{{lastError}}</dd>{{/lastError}}
  {{#lastAttempt}}<dt>last attempt</dt><dd>{{lastAttempt}}</dd>{{/lastAttempt}}
  {{#nextAttempt}}<dt>next attempt</dt><dd>{{nextAttempt}}</dd>{{/nextAttempt}}
  {{#hasOffset}}<dt>partition / offset</dt><dd id="offset">{{partition}} / {{offset}}</dd>{{/hasOffset}}
  {{#reason}}<dt>reason</dt><dd>{{reason}}</dd>{{/reason}}
  <dt>size</dt><dd>{{size}} bytes</dd>
</dl>
</div>
<h2>Value</h2>
{{#value}}<pre id="value">{{value}}</pre>{{/value}}{{^value}}<p class="muted">Sluice no longer holds this message's value.</p>{{/value}}
<h2>Errors</h2>
{{#hasErrors}}<ol class="errors">{{#errors}}<li><span class="muted">{{at}}</span> — {{error}}</li>{{/errors}}</ol>{{/hasErrors}}
{{^hasErrors}}<p class="muted">No failed attempts.</p>{{/hasErrors}}
"""#
}
