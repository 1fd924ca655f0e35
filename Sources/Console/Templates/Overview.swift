/// The overview: database connection, slot, one card per sink.
enum OverviewTemplate {
    static let text = #"""
<h1>Overview</h1>
<div class="cards">
  <section class="card">
    <h3>Database</h3>
    <dl class="facts">
      <dt>name</dt><dd>{{database}}</dd>
      <dt>replication</dt><dd>{{#connected}}<span class="ok">● connected</span>{{/connected}}{{^connected}}<span class="bad">● not connected</span>{{/connected}}</dd>
    </dl>
  </section>
  <section class="card">
    <h3>Slot</h3>
    <dl class="facts">
      <dt>name</dt><dd>{{slot}}</dd>
      <dt>confirmed LSN</dt><dd>{{confirmedLSN}}</dd>
      <dt>lag</dt><dd>{{lag}}</dd>
    </dl>
  </section>
</div>
<h2>Sinks</h2>
<div class="cards">
  {{#sinkCards}}
  <section class="card sink" data-sink="{{name}}">
    <h3><a class="title" href="/sinks/{{name}}">{{name}}</a> <span class="muted">→ {{topic}}</span></h3>
    <div class="muted">{{rate}} messages/s · {{delivery}}</div>
    {{#exactlyOnce}}<div class="muted transactions">committed up to <b>{{committedPosition}}</b> · transaction {{transactionState}}{{#transactionError}} · <span class="bad">{{transactionError}}</span>{{/transactionError}}</div>{{/exactlyOnce}}
    <div class="counts">
      <div><span class="muted">in flight</span><b>{{inFlight}}</b></div>
      <div><span class="muted">waiting</span><b>{{waiting}}</b></div>
      <div><span class="muted">failing</span><b class="{{#hasFailing}}bad{{/hasFailing}}">{{failing}}</b></div>
      <div><span class="muted">delivered</span><b>{{delivered}}</b></div>
      <div><span class="muted">cancelled</span><b>{{cancelled}}</b></div>
      <div><span class="muted">filtered</span><b>{{filtered}}</b></div>
    </div>
  </section>
  {{/sinkCards}}
</div>
"""#
}
