/// The login form: the console token, once per browser session.
enum LoginTemplate {
    static let text = #"""
<form class="login" method="post" action="/login">
  <h1>Sluice console</h1>
  {{#wrong}}<p class="bad">That is not the console token.</p>{{/wrong}}
  <label for="token">Console token (<code>console.token</code>)</label>
  <input id="token" name="token" type="password" autocomplete="current-password" autofocus required>
  <button class="primary" type="submit">Log in</button>
</form>
"""#
}
