package org.cryoprotect.proxy.auth;

import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.SecureRandom;
import java.util.Base64;
import java.util.Objects;
import java.util.function.Supplier;

/**
 * The server side of one SCRAM-SHA-256 exchange (RFC 5802, RFC 7677), behaving as PostgreSQL's
 * auth-scram.c does: the user name in client-first is ignored because the StartupMessage already
 * named the user, and channel binding is never offered because the proxy advertises only
 * SCRAM-SHA-256, not SCRAM-SHA-256-PLUS.
 *
 * <p>One instance per authentication attempt; not thread-safe (it lives on one event loop).
 */
public final class ScramServer {
  public static final String MECHANISM = "SCRAM-SHA-256";
  // PostgreSQL's SCRAM_RAW_NONCE_LEN.
  private static final int NONCE_BYTES = 18;

  private enum Stage {
    AWAIT_CLIENT_FIRST,
    AWAIT_CLIENT_FINAL,
    SUCCEEDED,
    FAILED
  }

  private final Secret.Scram secret;
  private final Supplier<String> serverNonce;
  private Stage stage = Stage.AWAIT_CLIENT_FIRST;
  private String gs2Header;
  private String clientFirstBare;
  private String serverFirst;
  private String nonce;
  private byte[] clientKey;

  public ScramServer(Secret.Scram secret, SecureRandom random) {
    this(secret, randomNonce(Objects.requireNonNull(random, "random")));
  }

  /** Tests pin the server nonce to replay the RFC 7677 example. */
  ScramServer(Secret.Scram secret, Supplier<String> serverNonce) {
    this.secret = Objects.requireNonNull(secret, "secret");
    this.serverNonce = serverNonce;
  }

  private static Supplier<String> randomNonce(SecureRandom random) {
    return () -> {
      byte[] raw = new byte[NONCE_BYTES];
      random.nextBytes(raw);
      return Base64.getEncoder().encodeToString(raw);
    };
  }

  /** Answers client-first-message with server-first-message: r=nonce,s=salt,i=iterations. */
  public byte[] serverFirst(byte[] clientFirstMessage) throws AuthException {
    expect(Stage.AWAIT_CLIENT_FIRST);
    stage = Stage.FAILED; // until proven otherwise: no second attempt on a broken exchange
    String message = text(clientFirstMessage);

    // gs2-header = gs2-cbind-flag "," [authzid] ","
    int flagEnd = message.indexOf(',');
    int authzidEnd = flagEnd < 0 ? -1 : message.indexOf(',', flagEnd + 1);
    if (authzidEnd < 0) {
      throw malformed("client-first-message has no GS2 header");
    }
    String flag = message.substring(0, flagEnd);
    if (flag.startsWith("p=")) {
      // A client asking for binding although we never offered -PLUS is misconfigured or tampered.
      throw new AuthException(
          "client requires SCRAM channel binding, but the proxy offers only " + MECHANISM);
    }
    if (!flag.equals("n") && !flag.equals("y")) {
      // 'y' (client could bind, thinks the server cannot) is honest here: we offer no -PLUS.
      throw malformed("unexpected channel-binding flag \"" + printable(flag) + "\"");
    }
    if (authzidEnd != flagEnd + 1) {
      throw new AuthException("client uses an authorization identity, which is not supported");
    }
    gs2Header = message.substring(0, authzidEnd + 1);
    clientFirstBare = message.substring(authzidEnd + 1);

    String[] attrs = clientFirstBare.split(",", -1);
    int at = 0;
    if (attrs[at].startsWith("m=")) {
      throw new AuthException("client requires an unsupported SCRAM extension");
    }
    if (!attrs[at].startsWith("n=")) {
      throw malformed("client-first-message has no user name attribute");
    }
    at++;
    if (at >= attrs.length || !attrs[at].startsWith("r=")) {
      throw malformed("client-first-message has no nonce");
    }
    String clientNonce = attrs[at].substring(2);
    if (clientNonce.isEmpty() || !isPrintable(clientNonce)) {
      throw malformed("client nonce is empty or not printable");
    }
    // RFC 5802 allows extensions after the nonce; like PostgreSQL we accept and ignore them.
    for (at++; at < attrs.length; at++) {
      requireAttribute(attrs[at]);
    }

    nonce = clientNonce + serverNonce.get();
    serverFirst =
        "r="
            + nonce
            + ",s="
            + Base64.getEncoder().encodeToString(secret.salt())
            + ",i="
            + secret.iterations();
    stage = Stage.AWAIT_CLIENT_FINAL;
    return serverFirst.getBytes(StandardCharsets.UTF_8);
  }

  /**
   * Verifies client-final-message (c=,r=,p=) and returns server-final-message (v=). A wrong proof
   * means a wrong password; everything else wrong means a broken or hostile client.
   */
  public byte[] serverFinal(byte[] clientFinalMessage) throws AuthException {
    expect(Stage.AWAIT_CLIENT_FINAL);
    stage = Stage.FAILED;
    String message = text(clientFinalMessage);

    // The proof must be last: AuthMessage covers everything before it.
    int proofAt = message.lastIndexOf(",p=");
    if (proofAt < 0) {
      throw malformed("client-final-message has no proof");
    }
    String withoutProof = message.substring(0, proofAt);
    byte[] proof = base64(message.substring(proofAt + 3), "proof");
    if (proof.length != ScramCrypto.KEY_LENGTH) {
      throw malformed("client proof has the wrong length");
    }

    String[] attrs = withoutProof.split(",", -1);
    if (attrs.length < 2 || !attrs[0].startsWith("c=") || !attrs[1].startsWith("r=")) {
      throw malformed("client-final-message must start with c= and r=");
    }
    // Without channel binding, c= carries the GS2 header back, so a tampered flag is detected.
    byte[] binding = base64(attrs[0].substring(2), "channel binding");
    if (!MessageDigest.isEqual(binding, gs2Header.getBytes(StandardCharsets.UTF_8))) {
      throw new AuthException("SCRAM channel binding check failed");
    }
    if (!attrs[1].substring(2).equals(nonce)) {
      throw malformed("nonce does not match");
    }
    for (int at = 2; at < attrs.length; at++) {
      requireAttribute(attrs[at]);
    }

    String authMessage = clientFirstBare + "," + serverFirst + "," + withoutProof;
    byte[] storedKey = secret.storedKey();
    byte[] recovered = ScramCrypto.xor(proof, ScramCrypto.hmac(storedKey, authMessage));
    if (!MessageDigest.isEqual(ScramCrypto.sha256(recovered), storedKey)) {
      throw new AuthException("password authentication failed");
    }
    clientKey = recovered;
    stage = Stage.SUCCEEDED;
    byte[] signature = ScramCrypto.hmac(secret.serverKey(), authMessage);
    return ("v=" + Base64.getEncoder().encodeToString(signature)).getBytes(StandardCharsets.UTF_8);
  }

  /**
   * The client's ClientKey, recovered from its proof. Together with the stored ServerKey it lets
   * the proxy log in to a server holding the same verifier, without the password (PgBouncer's SCRAM
   * pass-through).
   */
  public byte[] clientKey() {
    if (stage != Stage.SUCCEEDED) {
      throw new IllegalStateException("the SCRAM exchange has not succeeded");
    }
    return clientKey.clone();
  }

  private void expect(Stage expected) throws AuthException {
    if (stage != expected) {
      throw new AuthException("unexpected SCRAM message");
    }
  }

  private static void requireAttribute(String attr) throws AuthException {
    if (attr.length() < 2 || !isAsciiLetter(attr.charAt(0)) || attr.charAt(1) != '=') {
      throw malformed("invalid SCRAM attribute \"" + printable(attr) + "\"");
    }
  }

  private static byte[] base64(String value, String what) throws AuthException {
    try {
      return Base64.getDecoder().decode(value);
    } catch (IllegalArgumentException e) {
      throw malformed(what + " is not valid base64");
    }
  }

  // RFC 5802 "printable": %x21-2B / %x2D-7E, i.e. visible ASCII without the comma.
  private static boolean isPrintable(String s) {
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      if (c < 0x21 || c > 0x7e || c == ',') {
        return false;
      }
    }
    return true;
  }

  private static boolean isAsciiLetter(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  }

  /** Strict UTF-8: AuthMessage is hashed as bytes, so a lossy decode would corrupt it. */
  private static String text(byte[] message) throws AuthException {
    if (message == null || message.length == 0) {
      throw malformed("empty SCRAM message");
    }
    try {
      return StandardCharsets.UTF_8
          .newDecoder()
          .onMalformedInput(CodingErrorAction.REPORT)
          .onUnmappableCharacter(CodingErrorAction.REPORT)
          .decode(ByteBuffer.wrap(message))
          .toString();
    } catch (CharacterCodingException e) {
      throw malformed("SCRAM message is not valid UTF-8");
    }
  }

  /** Echoes client text into a reason safely: short, and no control characters. */
  private static String printable(String s) {
    String cut = s.length() > 32 ? s.substring(0, 32) + "..." : s;
    return cut.replaceAll("[^\\x20-\\x7e]", "?");
  }

  private static AuthException malformed(String why) {
    return AuthException.malformed("malformed SCRAM message: " + why);
  }
}
