package org.cryoprotect.proxy.frontend;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufAllocator;
import io.netty.handler.codec.DecoderException;
import java.io.IOException;
import javax.net.ssl.SSLException;
import org.cryoprotect.proxy.backend.ServerException;
import org.cryoprotect.proxy.config.ProxyConfig.Endpoint;
import org.cryoprotect.proxy.metrics.ProxyMetrics;
import org.cryoprotect.proxy.protocol.Frames;
import org.cryoprotect.proxy.protocol.ProtocolException;
import org.cryoprotect.proxy.protocol.SqlState;
import org.cryoprotect.proxy.protocol.backend.ErrorResponse;
import org.cryoprotect.proxy.protocol.backend.ErrorResponse.Severity;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Where failures become what the client is told: exceptions on a client channel, server connections
 * that could not be had or were lost, and server errors the proxy rewrites.
 */
final class ClientErrors {
  private static final Logger log = LoggerFactory.getLogger(ClientErrors.class);

  private ClientErrors() {}

  /**
   * A client's login failed on the server side: the server's own FATAL verbatim when it refused,
   * 57P03 when its node is unavailable (breaker open), else the failure's state. Closes the client.
   */
  static void loginFailed(ClientConnection client, Throwable cause, ProxyMetrics metrics) {
    if (cause instanceof ServerException e && e.serverError() != null) {
      String code = e.serverError().sqlState();
      if (code != null && code.length() == 5) {
        metrics.error(code.substring(0, 2), ProxyMetrics.SERVER);
      }
      client.closeReason("server refused login: " + e.serverError());
      client.sendAndClose(e.serverError().encode(client.channel().alloc()));
    } else if (cause instanceof ServerException e && e.state() == SqlState.CONNECTION_FAILURE) {
      client.fatal(SqlState.CANNOT_CONNECT_NOW, e.getMessage()); // the breaker is open
    } else if (cause instanceof ServerException e) {
      client.fatal(e.state(), e.getMessage());
    } else {
      client.fatal(SqlState.CONNECTION_FAILURE, "server login failed: " + cause);
    }
  }

  /** The ERROR a logged-in client gets when its unit could not get a server connection. */
  static ErrorResponse of(Throwable cause) {
    ErrorResponse error =
        cause instanceof ServerException e && e.serverError() != null
            ? e.serverError()
            : ErrorResponse.of(
                Severity.ERROR,
                cause instanceof ServerException e ? e.state() : SqlState.CONNECTION_FAILURE,
                cause.getMessage());
    return error.withSeverity(Severity.ERROR);
  }

  /** The server connection broke under a unit that cannot run again. */
  static ErrorResponse connectionLost(Endpoint node) {
    return ErrorResponse.of(
        Severity.ERROR,
        SqlState.CONNECTION_FAILURE,
        "server connection to "
            + node
            + " was lost during the transaction; it was rolled back unless it was committing");
  }

  /**
   * The server connection broke while a COMMIT, or a write in an implicit transaction, awaited its
   * answer: it may have committed or not, and the client must not be told it failed.
   */
  static ErrorResponse resolutionUnknown(Endpoint node) {
    return ErrorResponse.of(
        Severity.ERROR,
        SqlState.TRANSACTION_RESOLUTION_UNKNOWN,
        "server connection to "
            + node
            + " was lost while the transaction was committing; it may or may not have committed");
  }

  /**
   * The server's 42P05 for a client's second Parse of a name, reworded with the client's name
   * instead of the proxy's. Releases {@code frame}.
   */
  static ByteBuf duplicateStatement(ByteBuf frame, String clientName, ByteBufAllocator alloc) {
    ErrorResponse error = ErrorResponse.decode('E', Frames.body(frame));
    frame.release();
    java.util.Map<Character, String> fields = new java.util.LinkedHashMap<>(error.fields());
    fields.put('M', "prepared statement \"" + clientName + "\" already exists");
    return new ErrorResponse('E', fields).encode(alloc);
  }

  /** The server's ErrorResponse {@code frame} decoded when it is FATAL or PANIC, else null. */
  static ErrorResponse fatal(ByteBuf frame) {
    ErrorResponse error = ErrorResponse.decode('E', Frames.body(frame));
    return "FATAL".equals(error.severity()) || "PANIC".equals(error.severity()) ? error : null;
  }

  /** "cached plan must not change result type": the server's statement is stale after DDL. */
  static boolean isStalePlan(ByteBuf frame) {
    ErrorResponse error = ErrorResponse.decode('E', Frames.body(frame));
    return SqlState.FEATURE_NOT_SUPPORTED.code().equals(error.sqlState())
        && error.message() != null
        && error.message().contains("cached plan must not change result type");
  }

  static void handle(ClientConnection client, Throwable cause) {
    Throwable root =
        cause instanceof DecoderException && cause.getCause() != null ? cause.getCause() : cause;
    if (root instanceof ProtocolException) {
      client.fatal(SqlState.PROTOCOL_VIOLATION, root.getMessage());
    } else if (root instanceof SSLException) {
      client.closeReason("TLS failure: " + root.getMessage());
      client.channel().close();
    } else if (root instanceof IOException) {
      client.closeReason("I/O error: " + root.getMessage());
      client.channel().close();
    } else {
      log.error("unexpected failure on client {}", client.address(), root);
      client.fatal(SqlState.INTERNAL_ERROR, "internal error: " + root);
    }
  }
}
