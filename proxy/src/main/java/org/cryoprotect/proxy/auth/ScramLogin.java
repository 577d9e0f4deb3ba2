package org.cryoprotect.proxy.auth;

import com.ongres.scram.client.ScramClient;
import com.ongres.scram.common.ServerFirstMessage;
import com.ongres.scram.common.StringPreparation;
import com.ongres.scram.common.exception.ScramException;
import com.ongres.scram.common.exception.ScramInvalidServerSignatureException;
import com.ongres.scram.common.exception.ScramRuntimeException;
import com.ongres.scram.common.exception.ScramServerErrorException;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.util.Base64;
import java.util.List;
import java.util.Objects;
import java.util.function.Supplier;

/**
 * The proxy's side of SCRAM-SHA-256 when it logs in to a real PostgreSQL server, on top of ongres
 * scram-client (the library pgJDBC uses). Two ways to prove the password: the plaintext itself, or
 * PgBouncer-style pass-through with the ClientKey recovered by {@link ScramServer} plus the stored
 * ServerKey, which works only while the server holds the very same verifier.
 *
 * <p>One instance per login; not thread-safe.
 */
public final class ScramLogin {
  public static final String MECHANISM = "SCRAM-SHA-256";
  // PostgreSQL ignores the SCRAM user name in favour of the startup packet's; pgJDBC sends "*"
  // too, because the library refuses an empty one.
  private static final String IGNORED_USER = "*";

  private final ScramClient client;
  private final Secret.Scram expected;
  private boolean verified;

  private ScramLogin(ScramClient client, Secret.Scram expected) {
    this.client = client;
    this.expected = expected;
  }

  /**
   * Only the plain mechanism is used, without channel binding (GS2 flag 'n'), even when the server
   * also offers SCRAM-SHA-256-PLUS: binding would tie the proof to the proxy's own TLS session,
   * which pass-through keys cannot do, and 'n' is an honest "client does not bind".
   */
  public static boolean supports(List<String> serverMechanisms) {
    return serverMechanisms != null && serverMechanisms.contains(MECHANISM);
  }

  public static ScramLogin withPassword(String password) {
    return withPassword(IGNORED_USER, password, null);
  }

  /** Pass-through: {@code secret} is the verifier the client was checked against. */
  public static ScramLogin withKeys(byte[] clientKey, Secret.Scram secret) {
    return withKeys(IGNORED_USER, clientKey, secret, null);
  }

  /** Tests pin the user name and client nonce to replay the RFC 7677 example. */
  static ScramLogin withPassword(String user, String password, Supplier<String> nonce) {
    Objects.requireNonNull(password, "password");
    ScramClient.FinalBuildStage builder =
        ScramClient.builder()
            .advertisedMechanisms(List.of(MECHANISM))
            .username(user)
            .password(password.toCharArray())
            // SASLprep with PostgreSQL's fallback to raw bytes, matching the server's derivation.
            .stringPreparation(StringPreparation.POSTGRESQL_PREPARATION);
    return new ScramLogin(build(builder, nonce), null);
  }

  static ScramLogin withKeys(
      String user, byte[] clientKey, Secret.Scram secret, Supplier<String> nonce) {
    Objects.requireNonNull(secret, "secret");
    if (clientKey == null || clientKey.length != ScramCrypto.KEY_LENGTH) {
      throw new IllegalArgumentException("a SCRAM-SHA-256 ClientKey is 32 bytes");
    }
    ScramClient.FinalBuildStage builder =
        ScramClient.builder()
            .advertisedMechanisms(List.of(MECHANISM))
            .username(user)
            .clientAndServerKey(clientKey.clone(), secret.serverKey());
    return new ScramLogin(build(builder, nonce), secret);
  }

  private static ScramClient build(ScramClient.FinalBuildStage builder, Supplier<String> nonce) {
    return (nonce == null ? builder : builder.nonceSupplier(nonce)).build();
  }

  /** The SASLInitialResponse data: "n,,n=*,r=nonce". */
  public byte[] clientFirst() throws AuthException {
    try {
      return utf8(client.clientFirstMessage().toString());
    } catch (IllegalStateException | ScramRuntimeException e) {
      throw new AuthException(
          "SCRAM client-first-message cannot be sent now: " + e.getMessage(), e);
    }
  }

  /** Answers the server-first-message (from AuthenticationSASLContinue) with the client proof. */
  public byte[] clientFinal(byte[] serverFirst) throws AuthException {
    try {
      ServerFirstMessage first = client.serverFirstMessage(text(serverFirst));
      if (expected != null) {
        requireSameVerifier(first);
      }
      return utf8(client.clientFinalMessage().toString());
    } catch (ScramException
        | ScramRuntimeException
        | IllegalArgumentException
        | IllegalStateException e) {
      throw new AuthException("invalid SCRAM server-first-message: " + e.getMessage(), e);
    }
  }

  /**
   * Checks the server signature from AuthenticationSASLFinal: a server that cannot produce it does
   * not know the verifier, so it may be an impostor and the login must not proceed.
   */
  public void verifyServerFinal(byte[] serverFinal) throws AuthException {
    try {
      client.serverFinalMessage(text(serverFinal));
      verified = true;
    } catch (ScramServerErrorException e) {
      throw new AuthException("server rejected SCRAM authentication: " + e.getMessage(), e);
    } catch (ScramInvalidServerSignatureException e) {
      throw new AuthException("server's SCRAM signature is invalid: it does not know the secret");
    } catch (ScramException
        | ScramRuntimeException
        | IllegalArgumentException
        | IllegalStateException e) {
      throw new AuthException("invalid SCRAM server-final-message: " + e.getMessage(), e);
    }
  }

  /**
   * True once the server proved it knows the verifier. A server that sends AuthenticationOk before
   * this has skipped mutual authentication; the caller should refuse it.
   */
  public boolean isComplete() {
    return verified;
  }

  // The pass-through keys are only valid for the salt and iteration count they were made with.
  private void requireSameVerifier(ServerFirstMessage first) throws AuthException {
    byte[] salt;
    try {
      salt = Base64.getDecoder().decode(first.getSalt());
    } catch (IllegalArgumentException e) {
      throw new AuthException("invalid SCRAM server-first-message: salt is not valid base64");
    }
    if (first.getIterationCount() != expected.iterations()
        || !MessageDigest.isEqual(salt, expected.salt())) {
      throw new AuthException(
          "SCRAM pass-through is impossible: the server's SCRAM secret for this user differs from"
              + " the proxy's (other salt or iteration count); configure a password for the server"
              + " login or give the proxy the same secret as the server");
    }
  }

  private static String text(byte[] message) throws AuthException {
    if (message == null || message.length == 0) {
      throw new AuthException("empty SCRAM message from server");
    }
    return new String(message, StandardCharsets.UTF_8);
  }

  private static byte[] utf8(String s) {
    return s.getBytes(StandardCharsets.UTF_8);
  }
}
