package org.cryoprotect.proxy.frontend;

import com.github.benmanes.caffeine.cache.Cache;
import com.github.benmanes.caffeine.cache.Caffeine;
import io.netty.buffer.ByteBuf;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import java.net.InetSocketAddress;
import java.security.SecureRandom;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.cryoprotect.proxy.auth.AuthException;
import org.cryoprotect.proxy.auth.AuthQuery;
import org.cryoprotect.proxy.auth.Md5Auth;
import org.cryoprotect.proxy.auth.OAuthBearer;
import org.cryoprotect.proxy.auth.ScramServer;
import org.cryoprotect.proxy.auth.Secret;
import org.cryoprotect.proxy.auth.TokenVerifier;
import org.cryoprotect.proxy.backend.ServerCredentials;
import org.cryoprotect.proxy.config.ProxyConfig.AuthType;
import org.cryoprotect.proxy.config.ProxyConfig.Database;
import org.cryoprotect.proxy.config.ProxyConfig.Jwt;
import org.cryoprotect.proxy.config.ProxyConfig.PlaintextPolicy;
import org.cryoprotect.proxy.config.ProxyConfig.PoolMode;
import org.cryoprotect.proxy.metrics.ProxyMetrics;
import org.cryoprotect.proxy.protocol.Frames;
import org.cryoprotect.proxy.protocol.SqlState;
import org.cryoprotect.proxy.protocol.backend.Authentication.AuthenticationCleartextPassword;
import org.cryoprotect.proxy.protocol.backend.Authentication.AuthenticationMD5Password;
import org.cryoprotect.proxy.protocol.backend.Authentication.AuthenticationSASL;
import org.cryoprotect.proxy.protocol.backend.Authentication.AuthenticationSASLContinue;
import org.cryoprotect.proxy.protocol.backend.Authentication.AuthenticationSASLFinal;
import org.cryoprotect.proxy.protocol.frontend.PasswordMessage;
import org.cryoprotect.proxy.protocol.frontend.PasswordMessage.SASLInitialResponse;
import org.cryoprotect.proxy.protocol.frontend.StartupMessage;

/**
 * Authenticates the client (trust, md5 or SCRAM-SHA-256 against the users file or auth_query), then
 * logs in to the server and only then sends AuthenticationOk, so that a server that refuses the
 * login is reported before the client believes it is connected.
 */
final class ClientAuthHandler extends ChannelInboundHandlerAdapter {
  private static final SecureRandom RANDOM = new SecureRandom();

  /** Keys the mock SCRAM verifiers of unknown users; random per process, never leaves it. */
  private static final byte[] MOCK_KEY = randomBytes(32);

  private static final String SCRAM = "SCRAM-SHA-256";
  static final String CLAIMS = "request.jwt.claims";
  static final String CLAIMS_SIGNATURE = "request.jwt.claims_sig";

  private enum State {
    LOOKING_UP,
    AWAIT_TOKEN,
    AWAIT_OAUTH_INITIAL,
    AWAIT_OAUTH_ACK,
    AWAIT_MD5,
    AWAIT_SASL_INITIAL,
    AWAIT_SASL_RESPONSE,
    CONNECTING
  }

  private final Frontend frontend;
  private final ClientConnection client;
  private State state = State.LOOKING_UP;
  private Secret secret;
  private byte[] md5Salt;
  private ScramServer scram;
  private TokenVerifier.Rejected refused; // OAUTHBEARER: told once the client acknowledged

  ClientAuthHandler(Frontend frontend, ClientConnection client) {
    this.frontend = frontend;
    this.client = client;
  }

  @Override
  public void handlerAdded(ChannelHandlerContext ctx) {
    Jwt jwt = frontend.config().auth().jwt();
    if (jwt != null && !client.admin() && jwt.takes(client.user())) {
      askForToken(ctx, jwt);
      return;
    }
    AuthType type = frontend.config().auth().type();
    if (type == AuthType.TRUST) {
      Optional<Secret> listed = frontend.secrets().listed(client.user());
      connect(ctx, credentialsFor(listed.orElse(null), null));
      return;
    }
    if (client.notAdmin()) {
      challenge(ctx, type, null);
      return;
    }
    frontend
        .secrets()
        .lookup(client.database(), client.user())
        .whenComplete(
            (found, error) ->
                ctx.executor()
                    .execute(
                        () -> {
                          if (error instanceof AuthQuery.Busy) {
                            client.fatal(
                                SqlState.TOO_MANY_CONNECTIONS,
                                "too many logins waiting for their user to be looked up");
                            client.closeReason("53300 " + error.getMessage());
                            return;
                          }
                          if (error != null) {
                            // The reason (auth_query's SQL error, a refused login) is for the
                            // log, not for a client that has not authenticated.
                            client.fatal(
                                SqlState.INVALID_AUTHORIZATION_SPECIFICATION,
                                "cannot look up user \"" + client.user() + "\"");
                            client.closeReason("28000 cannot look up user: " + error.getMessage());
                          } else if (ctx.channel().isActive()) {
                            challenge(ctx, type, found.orElse(null));
                          }
                        }));
  }

  /**
   * An unknown user gets the same challenge as a known one and fails only at the end, like
   * PostgreSQL's mock authentication: the reply must not tell which user names exist.
   */
  private void challenge(ChannelHandlerContext ctx, AuthType type, Secret found) {
    secret = found;
    boolean scramSecret = found instanceof Secret.Scram;
    if (type == AuthType.MD5 && !scramSecret) {
      md5Salt = new byte[4];
      RANDOM.nextBytes(md5Salt);
      state = State.AWAIT_MD5;
      ctx.writeAndFlush(new AuthenticationMD5Password(md5Salt).encode(ctx.alloc()));
    } else {
      // PostgreSQL too answers md5 with SCRAM when the stored secret is a SCRAM verifier.
      state = State.AWAIT_SASL_INITIAL;
      ctx.writeAndFlush(new AuthenticationSASL(List.of(SCRAM)).encode(ctx.alloc()));
    }
    ctx.read();
  }

  @Override
  public void channelRead(ChannelHandlerContext ctx, Object msg) {
    ByteBuf frame = (ByteBuf) msg;
    try {
      if (Frames.type(frame) != PasswordMessage.TYPE
          || state == State.LOOKING_UP
          || state == State.CONNECTING) {
        client.fatal(
            SqlState.PROTOCOL_VIOLATION,
            "expected a password response, got message type '" + (char) Frames.type(frame) + "'");
        return;
      }
      ByteBuf body = Frames.body(frame);
      switch (state) {
        case AWAIT_TOKEN -> token(ctx, PasswordMessage.password(body));
        case AWAIT_OAUTH_INITIAL -> oauthInitial(ctx, SASLInitialResponse.decode(body));
        case AWAIT_OAUTH_ACK -> oauthAcknowledged(PasswordMessage.saslResponse(body));
        case AWAIT_MD5 -> md5(ctx, PasswordMessage.password(body));
        case AWAIT_SASL_INITIAL -> saslInitial(ctx, SASLInitialResponse.decode(body));
        case AWAIT_SASL_RESPONSE -> saslResponse(ctx, PasswordMessage.saslResponse(body));
        default -> throw new IllegalStateException(state.name());
      }
    } catch (AuthException e) {
      if (e.isMalformed()) {
        client.fatal(SqlState.PROTOCOL_VIOLATION, e.getMessage());
      } else {
        passwordFailed(e.getMessage());
      }
    } finally {
      frame.release();
    }
  }

  /**
   * A JWT login: the token comes as the password (cleartext exchange), so only over TLS, or from
   * loopback (the sidecar) when {@code allow_plaintext: loopback}.
   */
  private void askForToken(ChannelHandlerContext ctx, Jwt jwt) {
    boolean loopback =
        ctx.channel().remoteAddress() instanceof InetSocketAddress a
            && a.getAddress() != null
            && a.getAddress().isLoopbackAddress();
    boolean allowed =
        client.tls()
            || jwt.allowPlaintext() == PlaintextPolicy.ALWAYS
            || (jwt.allowPlaintext() == PlaintextPolicy.LOOPBACK && loopback);
    if (!allowed) {
      frontend.metrics().clientLoginFailed("token_plaintext");
      frontend.metrics().tokenRejected(ProxyMetrics.TOKEN_PLAINTEXT);
      client.fatal(
          SqlState.INVALID_AUTHORIZATION_SPECIFICATION,
          "a token is accepted only over TLS on this connection");
      return;
    }
    if (jwt.oauthbearer(client.user())) {
      state = State.AWAIT_OAUTH_INITIAL;
      ctx.writeAndFlush(new AuthenticationSASL(List.of(OAuthBearer.MECHANISM)).encode(ctx.alloc()));
    } else {
      state = State.AWAIT_TOKEN;
      ctx.writeAndFlush(new AuthenticationCleartextPassword().encode(ctx.alloc()));
    }
    ctx.read();
  }

  /** The password carrier: the token is the cleartext password. */
  private void token(ChannelHandlerContext ctx, String token) {
    try {
      accepted(ctx, frontend.secrets().tokens().verify(token));
    } catch (TokenVerifier.Rejected e) {
      refuse(e);
    }
  }

  /**
   * The OAUTHBEARER carrier (PostgreSQL 18's SASL mechanism): the token is in the initial response.
   * A refused or missing token gets RFC 7628's error challenge; the refusal itself (28000) follows
   * the client's acknowledgement, as PostgreSQL does it.
   */
  private void oauthInitial(ChannelHandlerContext ctx, SASLInitialResponse initial)
      throws AuthException {
    if (!OAuthBearer.MECHANISM.equals(initial.mechanism())) {
      throw AuthException.malformed(
          "client selected an invalid SASL authentication mechanism: " + initial.mechanism());
    }
    String token = OAuthBearer.token(initial.data());
    try {
      if (token.isEmpty()) {
        throw new TokenVerifier.Rejected(TokenVerifier.Reason.MALFORMED, "no bearer token");
      }
      accepted(ctx, frontend.secrets().tokens().verify(token));
    } catch (TokenVerifier.Rejected e) {
      refused = e;
      state = State.AWAIT_OAUTH_ACK;
      ctx.writeAndFlush(new AuthenticationSASLContinue(OAuthBearer.refusal()).encode(ctx.alloc()));
      ctx.read();
    }
  }

  private void oauthAcknowledged(byte[] response) throws AuthException {
    if (!OAuthBearer.acknowledges(response)) {
      throw AuthException.malformed("OAUTHBEARER: expected the client's acknowledgement (0x01)");
    }
    refuse(refused);
  }

  private void refuse(TokenVerifier.Rejected e) {
    frontend.metrics().clientLoginFailed("token_" + e.reason().label());
    frontend.metrics().tokenRejected(e.reason().label());
    client.fatal(SqlState.INVALID_AUTHORIZATION_SPECIFICATION, e.getMessage());
    client.closeReason("28000 token refused: " + e.reason().label());
  }

  /** A verified token: the session logs in to the server as the role it maps to. */
  private void accepted(ChannelHandlerContext ctx, TokenVerifier.Verified verified) {
    if (client.database().user() != null) {
      // A fixed server login would run every token's session as that one role.
      client.fatal(
          SqlState.INVALID_AUTHORIZATION_SPECIFICATION,
          "database \"" + client.database().name() + "\" does not take token logins");
      client.closeReason(
          "28000 token login to a database with a fixed server user (databases.*.user)");
      return;
    }
    frontend.metrics().tokenAccepted(verified.cached());
    state = State.LOOKING_UP;
    client.token(verified);
    // The claims become two of the client's settings: applied at every checkout where the server
    // connection has other ones, and believed by auth.jwt() only with their signature.
    Map<String, String> parameters = new LinkedHashMap<>(client.startup().parameters());
    parameters.put(CLAIMS, verified.claims());
    parameters.put(CLAIMS_SIGNATURE, verified.claimsSignature());
    client.startup(
        new StartupMessage(client.startup().protocolVersion(), parameters), client.database());
    frontend
        .secrets()
        .lookup(client.database(), verified.role())
        .whenComplete(
            (found, error) ->
                ctx.executor()
                    .execute(
                        () -> {
                          Secret secret = error == null ? found.orElse(null) : null;
                          if (!(secret instanceof Secret.Plain)
                              && !(secret instanceof Secret.Md5)) {
                            // SCRAM pass-through needs the client's own proof: none here.
                            client.fatal(
                                SqlState.INVALID_AUTHORIZATION_SPECIFICATION,
                                "no server login for role \"" + verified.role() + "\"");
                            client.closeReason(
                                "28000 role "
                                    + verified.role()
                                    + " needs a plain or md5 secret in users_file or auth_query"
                                    + (error == null ? "" : ": " + error.getMessage()));
                          } else if (ctx.channel().isActive()) {
                            connect(ctx, credentialsFor(secret, null));
                          }
                        }));
  }

  private void md5(ChannelHandlerContext ctx, String response) {
    if (secret == null || !Md5Auth.verify(secret, client.user(), md5Salt, response)) {
      passwordFailed(null);
      return;
    }
    connect(ctx, credentialsFor(secret, null));
  }

  private void saslInitial(ChannelHandlerContext ctx, SASLInitialResponse initial)
      throws AuthException {
    if (!SCRAM.equals(initial.mechanism())) {
      client.fatal(
          SqlState.PROTOCOL_VIOLATION,
          "client selected an invalid SASL authentication mechanism \""
              + initial.mechanism()
              + "\"");
      return;
    }
    scram = new ScramServer(scramSecret(), RANDOM);
    byte[] serverFirst = scram.serverFirst(initial.data());
    state = State.AWAIT_SASL_RESPONSE;
    ctx.writeAndFlush(new AuthenticationSASLContinue(serverFirst).encode(ctx.alloc()));
    ctx.read();
  }

  private void saslResponse(ChannelHandlerContext ctx, byte[] clientFinal) throws AuthException {
    byte[] serverFinal = scram.serverFinal(clientFinal);
    if (secret == null || secret instanceof Secret.Md5) {
      passwordFailed(null); // the mock exchange can never succeed
      return;
    }
    ctx.write(new AuthenticationSASLFinal(serverFinal).encode(ctx.alloc()));
    connect(ctx, credentialsFor(secret, scram.clientKey()));
  }

  /** A plain-text secret's SCRAM verifier, by user and password: derived once, not per login. */
  private static final Cache<Derivation, Secret.Scram> DERIVED =
      Caffeine.newBuilder().maximumSize(10_000).build();

  private record Derivation(String user, String password) {
    @Override
    public String toString() {
      return "Derivation[" + user + "]";
    }
  }

  /**
   * The secret SCRAM verifies against; a mock for unknown users and md5 secrets. A plain password's
   * verifier is derived (PBKDF2, 4096 rounds, about a millisecond of the event loop) with the
   * user's stable salt the first time, then taken from {@link #DERIVED}: logins do not queue behind
   * hashing, and the same salt every time tells nothing about which users exist.
   */
  private Secret.Scram scramSecret() {
    if (secret instanceof Secret.Scram s) {
      return s;
    }
    if (secret instanceof Secret.Plain p) {
      String user = client.user();
      return DERIVED.get(
          new Derivation(user, p.password()),
          k ->
              Secret.Scram.derive(
                  p.password(),
                  Secret.Scram.mockSalt(user, MOCK_KEY),
                  Secret.Scram.DEFAULT_ITERATIONS));
    }
    return Secret.Scram.mock(client.user(), MOCK_KEY);
  }

  private static byte[] randomBytes(int n) {
    byte[] bytes = new byte[n];
    RANDOM.nextBytes(bytes);
    return bytes;
  }

  private void passwordFailed(String why) {
    frontend.metrics().clientLoginFailed(secret == null ? "unknown_user" : "wrong_password");
    client.fatal(
        SqlState.INVALID_PASSWORD,
        "password authentication failed for user \"" + client.user() + "\"");
    if (why != null) {
      client.closeReason("28P01 authentication failed: " + why);
    }
  }

  /**
   * The database's configured login wins; otherwise the client's own user with whatever its secret
   * allows: a plain password, the md5 hash, or SCRAM pass-through keys.
   */
  private ServerCredentials credentialsFor(Secret secret, byte[] clientKey) {
    Database db = client.database();
    if (db.user() != null) {
      return db.password() == null
          ? new ServerCredentials.None()
          : new ServerCredentials.Password(db.password());
    }
    if (secret instanceof Secret.Plain p) {
      return new ServerCredentials.Password(p.password());
    }
    if (secret instanceof Secret.Md5 m) {
      return new ServerCredentials.Md5Hash(m.hash());
    }
    if (secret instanceof Secret.Scram s && clientKey != null) {
      return new ServerCredentials.ScramKeys(clientKey, s);
    }
    return new ServerCredentials.None();
  }

  /**
   * Authenticated: the session takes over. It borrows a server connection of the pool for the
   * database and login role, which logs in with the canonical startup (user, database); the
   * client's own settings are applied per checkout.
   */
  private void connect(ChannelHandlerContext ctx, ServerCredentials credentials) {
    state = State.CONNECTING;
    if (client.admin()) {
      ctx.pipeline().replace(this, "admin", new AdminConsole(frontend, client));
      return;
    }
    Database db = client.database();
    String role = client.token() != null || db.user() == null ? client.loginRole() : db.user();
    Map<String, String> parameters = new LinkedHashMap<>();
    parameters.put("user", role);
    parameters.put("database", db.dbname());
    StartupMessage startup = new StartupMessage(StartupMessage.V3_0, parameters);
    boolean transactionMode = frontend.config().poolMode(db, client.user()) == PoolMode.TRANSACTION;
    ctx.pipeline()
        .replace(
            this,
            "session",
            new ClientSession(
                client,
                frontend,
                frontend.pools().pool(db, role),
                transactionMode,
                startup,
                credentials));
  }

  @Override
  public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
    ClientErrors.handle(client, cause);
  }
}
