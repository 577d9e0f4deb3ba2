package org.cryoprotect.proxy.backend;

import io.netty.buffer.ByteBuf;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.handler.ssl.SslHandler;
import io.netty.util.ReferenceCountUtil;
import io.netty.util.concurrent.Promise;
import java.util.LinkedHashMap;
import java.util.Map;
import org.cryoprotect.proxy.auth.AuthException;
import org.cryoprotect.proxy.auth.Md5Auth;
import org.cryoprotect.proxy.auth.ScramLogin;
import org.cryoprotect.proxy.config.ProxyConfig.Endpoint;
import org.cryoprotect.proxy.protocol.Frames;
import org.cryoprotect.proxy.protocol.PgFrameDecoder;
import org.cryoprotect.proxy.protocol.SqlState;
import org.cryoprotect.proxy.protocol.backend.Authentication;
import org.cryoprotect.proxy.protocol.backend.Authentication.AuthenticationMD5Password;
import org.cryoprotect.proxy.protocol.backend.Authentication.AuthenticationSASL;
import org.cryoprotect.proxy.protocol.backend.Authentication.AuthenticationSASLContinue;
import org.cryoprotect.proxy.protocol.backend.Authentication.AuthenticationSASLFinal;
import org.cryoprotect.proxy.protocol.backend.BackendKeyData;
import org.cryoprotect.proxy.protocol.backend.ErrorResponse;
import org.cryoprotect.proxy.protocol.backend.ParameterStatus;
import org.cryoprotect.proxy.protocol.frontend.PasswordMessage;
import org.cryoprotect.proxy.protocol.frontend.PasswordMessage.SASLInitialResponse;
import org.cryoprotect.proxy.protocol.frontend.StartupMessage;
import org.cryoprotect.proxy.protocol.frontend.StartupPacket.SSLRequest;

/**
 * Logs the proxy in to a server: optional TLS negotiation, StartupMessage, authentication, then
 * collects ParameterStatus and BackendKeyData until ReadyForQuery, when the promise completes and
 * this handler leaves the pipeline. Anything else fails the promise and closes the channel.
 */
final class ServerLoginHandler extends ChannelInboundHandlerAdapter {
  /** Frames from a server are not bounded by the client limit: a DataRow may reach 1 GB. */
  static final int MAX_SERVER_MESSAGE = 1 << 30;

  /**
   * Until the login ends no server message is more than a few kilobytes (authentication requests,
   * ParameterStatus, BackendKeyData, errors): a larger one is a broken or hostile server, refused
   * before it is buffered.
   */
  static final int MAX_LOGIN_MESSAGE = 1 << 20;

  private enum State {
    TLS_REPLY,
    TLS_HANDSHAKE,
    AUTHENTICATING,
    AWAITING_READY,
    DONE
  }

  private final Promise<ServerConnection> promise;
  private final Endpoint node;
  private final StartupMessage startup;
  private final ServerCredentials credentials;
  private final ServerTlsContext tls;
  private final Map<String, String> parameters = new LinkedHashMap<>();
  private BackendKeyData keyData;
  private ScramLogin scram;
  private State state;

  ServerLoginHandler(
      Promise<ServerConnection> promise,
      Endpoint node,
      StartupMessage startup,
      ServerCredentials credentials,
      ServerTlsContext tls) {
    this.promise = promise;
    this.node = node;
    this.startup = startup;
    this.credentials = credentials;
    this.tls = tls;
  }

  @Override
  public void channelActive(ChannelHandlerContext ctx) {
    if (tls.enabled()) {
      state = State.TLS_REPLY;
      ctx.writeAndFlush(SSLRequest.encode(ctx.alloc()));
    } else {
      sendStartup(ctx);
    }
    ctx.fireChannelActive();
  }

  @Override
  public void channelRead(ChannelHandlerContext ctx, Object msg) {
    ByteBuf buf = (ByteBuf) msg;
    try {
      if (state == State.TLS_REPLY) {
        tlsReply(ctx, buf);
      } else if (state == State.AUTHENTICATING || state == State.AWAITING_READY) {
        frame(ctx, buf);
      } else {
        fail(ctx, SqlState.PROTOCOL_VIOLATION, "unexpected data from server during login");
      }
    } catch (AuthException e) {
      fail(
          ctx,
          SqlState.INVALID_PASSWORD,
          "cannot log in to server " + node + ": " + e.getMessage());
    } catch (RuntimeException e) {
      fail(
          ctx,
          SqlState.PROTOCOL_VIOLATION,
          "invalid login reply from " + node + ": " + e.getMessage());
    } finally {
      ReferenceCountUtil.release(buf);
    }
  }

  private void tlsReply(ChannelHandlerContext ctx, ByteBuf buf) {
    byte answer = buf.readByte();
    if (buf.isReadable()) {
      // Bytes after the one-byte answer were sent before encryption began: CVE-2021-23222.
      fail(ctx, SqlState.PROTOCOL_VIOLATION, "server sent unencrypted data after its TLS answer");
      return;
    }
    if (answer == 'S') {
      state = State.TLS_HANDSHAKE;
      SslHandler ssl = tls.newHandler(ctx.alloc(), node);
      ctx.pipeline().addFirst("tls", ssl);
      ssl.handshakeFuture()
          .addListener(
              f -> {
                if (f.isSuccess()) {
                  sendStartup(ctx);
                } else {
                  fail(
                      ctx,
                      SqlState.SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
                      "TLS handshake with " + node + " failed: " + f.cause().getMessage());
                }
              });
    } else if (answer == 'N' && !tls.required()) {
      sendStartup(ctx);
    } else {
      fail(
          ctx,
          SqlState.SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
          "server " + node + " does not accept TLS, which tls.server.mode requires");
    }
  }

  private void sendStartup(ChannelHandlerContext ctx) {
    state = State.AUTHENTICATING;
    ctx.pipeline().addBefore(ctx.name(), "frames", new PgFrameDecoder(MAX_LOGIN_MESSAGE));
    ctx.writeAndFlush(startup.encode(ctx.alloc()));
  }

  private void frame(ChannelHandlerContext ctx, ByteBuf frame) throws AuthException {
    byte type = Frames.type(frame);
    ByteBuf body = Frames.body(frame);
    switch (type) {
      case Authentication.TYPE -> authenticate(ctx, Authentication.decode(body));
      case ParameterStatus.TYPE -> {
        ParameterStatus status = ParameterStatus.decode(body);
        parameters.put(status.name(), status.value());
      }
      case BackendKeyData.TYPE -> keyData = BackendKeyData.decode(body);
      case 'Z' -> ready(ctx);
      case ErrorResponse.TYPE -> {
        state = State.DONE;
        promise.tryFailure(new ServerException(ErrorResponse.decode(ErrorResponse.TYPE, body)));
        ctx.close();
      }
      case ErrorResponse.NOTICE_TYPE, 'v' -> {
        // A notice during login, or NegotiateProtocolVersion for options we never sent: ignore.
      }
      default ->
          fail(
              ctx,
              SqlState.PROTOCOL_VIOLATION,
              "unexpected message type " + (char) type + " from " + node + " during login");
    }
  }

  private void authenticate(ChannelHandlerContext ctx, Authentication request)
      throws AuthException {
    String user = startup.user();
    if (request instanceof Authentication.AuthenticationOk) {
      if (scram != null && !scram.isComplete()) {
        // A server that skips SCRAM's final message never proved it knows the secret.
        throw new AuthException("server ended SCRAM without proving it knows the password");
      }
      state = State.AWAITING_READY;
    } else if (request instanceof Authentication.AuthenticationCleartextPassword) {
      ctx.writeAndFlush(PasswordMessage.encodePassword(ctx.alloc(), password("password")));
    } else if (request instanceof AuthenticationMD5Password md5) {
      String hash =
          credentials instanceof ServerCredentials.Md5Hash h
              ? h.hash()
              : Md5Auth.hash(password("md5"), user);
      ctx.writeAndFlush(
          PasswordMessage.encodePassword(ctx.alloc(), Md5Auth.response(hash, md5.salt())));
    } else if (request instanceof AuthenticationSASL sasl) {
      if (!ScramLogin.supports(sasl.mechanisms())) {
        throw new AuthException("server offers only " + sasl.mechanisms());
      }
      scram = newScram();
      ctx.writeAndFlush(
          new SASLInitialResponse(ScramLogin.MECHANISM, scram.clientFirst()).encode(ctx.alloc()));
    } else if (request instanceof AuthenticationSASLContinue next && scram != null) {
      ctx.writeAndFlush(
          PasswordMessage.encodeSaslResponse(ctx.alloc(), scram.clientFinal(next.data())));
    } else if (request instanceof AuthenticationSASLFinal last && scram != null) {
      scram.verifyServerFinal(last.data());
    } else {
      throw new AuthException("server requested an unsupported authentication method " + request);
    }
  }

  private ScramLogin newScram() throws AuthException {
    if (credentials instanceof ServerCredentials.ScramKeys keys) {
      return ScramLogin.withKeys(keys.clientKey(), keys.secret());
    }
    return ScramLogin.withPassword(password("SCRAM-SHA-256"));
  }

  private String password(String method) throws AuthException {
    if (credentials instanceof ServerCredentials.Password p) {
      return p.password();
    }
    throw new AuthException(
        "server asks for "
            + method
            + " authentication but no password is known for user \""
            + startup.user()
            + "\" (set the database's password, or give the user a plain password in"
            + " auth.users_file)");
  }

  private void ready(ChannelHandlerContext ctx) {
    if (state != State.AWAITING_READY || keyData == null) {
      fail(ctx, SqlState.PROTOCOL_VIOLATION, "server " + node + " was ready before login ended");
      return;
    }
    state = State.DONE;
    ((PgFrameDecoder) ctx.pipeline().get("frames")).maxMessageSize(MAX_SERVER_MESSAGE);
    ctx.pipeline().remove(this);
    if (!promise.trySuccess(new ServerConnection(ctx.channel(), node, keyData, parameters))) {
      ctx.close(); // the caller gave up (timeout, client gone): nobody will use this connection
    }
  }

  private void fail(ChannelHandlerContext ctx, SqlState state, String message) {
    this.state = State.DONE;
    promise.tryFailure(new ServerException(state, message));
    ctx.close();
  }

  @Override
  public void channelInactive(ChannelHandlerContext ctx) {
    promise.tryFailure(
        new ServerException(
            SqlState.SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
            "server " + node + " closed the connection during login"));
    ctx.fireChannelInactive();
  }

  @Override
  public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
    Throwable root = cause.getCause() != null ? cause.getCause() : cause;
    fail(
        ctx,
        SqlState.SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
        "login to " + node + " failed: " + root.getMessage());
  }
}
