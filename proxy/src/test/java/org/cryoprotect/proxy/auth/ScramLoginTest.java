package org.cryoprotect.proxy.auth;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.cryoprotect.proxy.auth.ScramServerTest.RFC_CLIENT_FINAL;
import static org.cryoprotect.proxy.auth.ScramServerTest.RFC_CLIENT_FIRST;
import static org.cryoprotect.proxy.auth.ScramServerTest.RFC_CLIENT_NONCE;
import static org.cryoprotect.proxy.auth.ScramServerTest.RFC_SECRET;
import static org.cryoprotect.proxy.auth.ScramServerTest.RFC_SERVER_FINAL;
import static org.cryoprotect.proxy.auth.ScramServerTest.RFC_SERVER_FIRST;
import static org.cryoprotect.proxy.auth.ScramServerTest.bytes;
import static org.cryoprotect.proxy.auth.ScramServerTest.text;

import java.security.SecureRandom;
import java.util.List;
import org.junit.jupiter.api.Test;

class ScramLoginTest {
  private static final SecureRandom RANDOM = new SecureRandom();

  @Test
  void passwordModeReproducesRfc7677Example() throws Exception {
    ScramLogin login = ScramLogin.withPassword("user", "pencil", () -> RFC_CLIENT_NONCE);

    assertThat(text(login.clientFirst())).isEqualTo(RFC_CLIENT_FIRST);
    assertThat(text(login.clientFinal(bytes(RFC_SERVER_FIRST)))).isEqualTo(RFC_CLIENT_FINAL);
    login.verifyServerFinal(bytes(RFC_SERVER_FINAL));
    assertThat(login.isComplete()).isTrue();
  }

  @Test
  void keysModeReproducesRfc7677Example() throws Exception {
    ScramServer server = ScramServerTest.rfcServer();
    server.serverFirst(bytes(RFC_CLIENT_FIRST));
    server.serverFinal(bytes(RFC_CLIENT_FINAL));

    ScramLogin login =
        ScramLogin.withKeys("user", server.clientKey(), RFC_SECRET, () -> RFC_CLIENT_NONCE);

    assertThat(text(login.clientFirst())).isEqualTo(RFC_CLIENT_FIRST);
    assertThat(text(login.clientFinal(bytes(RFC_SERVER_FIRST)))).isEqualTo(RFC_CLIENT_FINAL);
    login.verifyServerFinal(bytes(RFC_SERVER_FINAL));
    assertThat(login.isComplete()).isTrue();
  }

  @Test
  void roundTripWithPassword() throws Exception {
    Secret.Scram secret = new Secret.Plain("correct horse").toScram();
    ScramServer server = new ScramServer(secret, RANDOM);
    ScramLogin login = ScramLogin.withPassword("correct horse");

    byte[] clientFirst = login.clientFirst();
    assertThat(text(clientFirst)).startsWith("n,,n=*,r=");
    byte[] serverFirst = server.serverFirst(clientFirst);
    login.verifyServerFinal(server.serverFinal(login.clientFinal(serverFirst)));
    assertThat(login.isComplete()).isTrue();
  }

  @Test
  void roundTripWithPassThroughKeys() throws Exception {
    // The client logs in to the proxy; the proxy logs in to the "real" server with the recovered
    // ClientKey, the server holding the same verifier as the proxy.
    Secret.Scram secret = Secret.Scram.derive("s3cret");
    ScramServer proxy = new ScramServer(secret, RANDOM);
    exchange(ScramLogin.withPassword("s3cret"), proxy);

    ScramServer realServer = new ScramServer(secret, RANDOM);
    ScramLogin passThrough = ScramLogin.withKeys(proxy.clientKey(), secret);
    passThrough.verifyServerFinal(exchange(passThrough, realServer));
    assertThat(passThrough.isComplete()).isTrue();
  }

  @Test
  void passThroughRefusesServerWithOtherSalt() throws Exception {
    Secret.Scram proxySecret = Secret.Scram.derive("s3cret");
    ScramServer proxy = new ScramServer(proxySecret, RANDOM);
    exchange(ScramLogin.withPassword("s3cret"), proxy);

    ScramServer realServer = new ScramServer(Secret.Scram.derive("s3cret"), RANDOM);
    ScramLogin passThrough = ScramLogin.withKeys(proxy.clientKey(), proxySecret);
    byte[] serverFirst = realServer.serverFirst(passThrough.clientFirst());

    assertThatThrownBy(() -> passThrough.clientFinal(serverFirst))
        .isInstanceOf(AuthException.class)
        .hasMessageContaining("pass-through is impossible")
        .hasMessageContaining("configure a password");
  }

  @Test
  void wrongPasswordIsRejectedByServer() throws Exception {
    ScramServer server = new ScramServer(Secret.Scram.derive("right"), RANDOM);
    ScramLogin login = ScramLogin.withPassword("wrong");
    byte[] clientFinal = login.clientFinal(server.serverFirst(login.clientFirst()));

    assertThatThrownBy(() -> server.serverFinal(clientFinal))
        .isInstanceOf(AuthException.class)
        .hasMessage("password authentication failed");
  }

  @Test
  void rejectsServerThatDoesNotKnowTheSecret() throws Exception {
    ScramLogin login = ScramLogin.withPassword("user", "pencil", () -> RFC_CLIENT_NONCE);
    login.clientFirst();
    login.clientFinal(bytes(RFC_SERVER_FIRST));

    assertThatThrownBy(
            () -> login.verifyServerFinal(bytes("v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")))
        .isInstanceOf(AuthException.class)
        .hasMessageContaining("signature");
    assertThat(login.isComplete()).isFalse();
  }

  @Test
  void reportsServerError() throws Exception {
    ScramLogin login = ScramLogin.withPassword("user", "pencil", () -> RFC_CLIENT_NONCE);
    login.clientFirst();
    login.clientFinal(bytes(RFC_SERVER_FIRST));

    assertThatThrownBy(() -> login.verifyServerFinal(bytes("e=invalid-proof")))
        .isInstanceOf(AuthException.class)
        .hasMessageContaining("rejected");
  }

  @Test
  void malformedServerMessagesAreAuthExceptions() throws Exception {
    ScramLogin wrongNonce = ScramLogin.withPassword("user", "pencil", () -> "mine");
    wrongNonce.clientFirst();
    assertThatThrownBy(() -> wrongNonce.clientFinal(bytes(RFC_SERVER_FIRST)))
        .isInstanceOf(AuthException.class);

    ScramLogin garbage = ScramLogin.withPassword("pencil");
    garbage.clientFirst();
    assertThatThrownBy(() -> garbage.clientFinal(bytes("garbage")))
        .isInstanceOf(AuthException.class);

    ScramLogin outOfOrder = ScramLogin.withPassword("pencil");
    assertThatThrownBy(() -> outOfOrder.verifyServerFinal(bytes(RFC_SERVER_FINAL)))
        .isInstanceOf(AuthException.class);
    assertThatThrownBy(() -> outOfOrder.clientFinal(new byte[0])).isInstanceOf(AuthException.class);
  }

  @Test
  void negotiatesPlainScramEvenWhenPlusIsOffered() throws Exception {
    assertThat(ScramLogin.supports(List.of("SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"))).isTrue();
    assertThat(ScramLogin.supports(List.of("SCRAM-SHA-256"))).isTrue();
    assertThat(ScramLogin.supports(List.of("SCRAM-SHA-256-PLUS"))).isFalse();
    assertThat(ScramLogin.supports(List.of("OAUTHBEARER"))).isFalse();
    // GS2 flag 'n': "client does not support channel binding", never the downgrade signal 'y'.
    assertThat(text(ScramLogin.withPassword("x").clientFirst())).startsWith("n,,");
  }

  @Test
  void nonAsciiPasswordMatchesServerDerivation() throws Exception {
    // SASLprep maps U+00A0 (no-break space) to a space on both sides.
    ScramServer server = new ScramServer(Secret.Scram.derive("p\u00e2ss word"), RANDOM);
    ScramLogin login = ScramLogin.withPassword("p\u00e2ss\u00a0word");
    login.verifyServerFinal(exchange(login, server));
  }

  /** Runs client-first to server-final and returns the server-final-message. */
  private static byte[] exchange(ScramLogin login, ScramServer server) throws AuthException {
    byte[] serverFirst = server.serverFirst(login.clientFirst());
    return server.serverFinal(login.clientFinal(serverFirst));
  }
}
