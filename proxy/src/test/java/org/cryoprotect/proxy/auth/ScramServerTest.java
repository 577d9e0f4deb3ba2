package org.cryoprotect.proxy.auth;

import static java.nio.charset.StandardCharsets.UTF_8;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.security.SecureRandom;
import java.util.Base64;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

class ScramServerTest {
  // RFC 7677 section 3: user "user", password "pencil".
  static final byte[] RFC_SALT = Base64.getDecoder().decode("W22ZaJ0SNY7soEsUEjb6gQ==");
  static final String RFC_CLIENT_NONCE = "rOprNGfwEbeRWgbNEkqO";
  static final String RFC_SERVER_NONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
  static final String RFC_CLIENT_FIRST = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
  static final String RFC_SERVER_FIRST =
      "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
  static final String RFC_CLIENT_FINAL =
      "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
          + "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
  static final String RFC_SERVER_FINAL = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

  static final Secret.Scram RFC_SECRET = Secret.Scram.derive("pencil", RFC_SALT, 4096);
  private static final SecureRandom RANDOM = new SecureRandom();

  static ScramServer rfcServer() {
    return new ScramServer(RFC_SECRET, () -> RFC_SERVER_NONCE);
  }

  @Test
  void reproducesRfc7677Example() throws Exception {
    ScramServer server = rfcServer();

    assertThat(text(server.serverFirst(bytes(RFC_CLIENT_FIRST)))).isEqualTo(RFC_SERVER_FIRST);
    assertThat(text(server.serverFinal(bytes(RFC_CLIENT_FINAL)))).isEqualTo(RFC_SERVER_FINAL);

    byte[] expectedClientKey =
        ScramCrypto.hmac(ScramCrypto.saltedPassword("pencil", RFC_SALT, 4096), "Client Key");
    assertThat(server.clientKey()).isEqualTo(expectedClientKey);
  }

  @Test
  void ignoresUserNameInClientFirst() throws Exception {
    // libpq sends "n=", pgJDBC "n=*": the StartupMessage names the user, never SCRAM.
    for (String user : new String[] {"", "*", "somebody-else"}) {
      ScramServer server = new ScramServer(RFC_SECRET, RANDOM);
      String first = text(server.serverFirst(bytes("n,,n=" + user + ",r=abc")));
      assertThat(first).startsWith("r=abc").contains(",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
    }
  }

  @Test
  void randomServerNonceExtendsClientNonce() throws Exception {
    String a = text(new ScramServer(RFC_SECRET, RANDOM).serverFirst(bytes("n,,n=,r=abc")));
    String b = text(new ScramServer(RFC_SECRET, RANDOM).serverFirst(bytes("n,,n=,r=abc")));
    String nonceA = a.substring(2, a.indexOf(','));
    assertThat(nonceA).startsWith("abc").hasSize(3 + 24); // 18 random bytes in base64
    assertThat(a).isNotEqualTo(b);
  }

  @Test
  void wrongProofIsPasswordFailure() throws Exception {
    ScramServer server = rfcServer();
    server.serverFirst(bytes(RFC_CLIENT_FIRST));
    String tampered = RFC_CLIENT_FINAL.replace("p=dHzb", "p=dHzc");

    assertThatThrownBy(() -> server.serverFinal(bytes(tampered)))
        .isInstanceOf(AuthException.class)
        .hasMessage("password authentication failed");
    assertThatThrownBy(server::clientKey).isInstanceOf(IllegalStateException.class);
  }

  @Test
  void acceptsClientThatCouldBindButSawNoPlus() throws Exception {
    ScramServer server = new ScramServer(RFC_SECRET, () -> "srv");
    String serverFirst = text(server.serverFirst(bytes("y,,n=,r=cli")));
    String withoutProof = "c=" + b64(bytes("y,,")) + ",r=clisrv";
    byte[] proof = proof("pencil", "n=,r=cli," + serverFirst + "," + withoutProof);

    byte[] serverFinal = server.serverFinal(bytes(withoutProof + ",p=" + b64(proof)));

    assertThat(text(serverFinal)).startsWith("v=");
  }

  @ParameterizedTest
  @ValueSource(
      strings = {
        "",
        "garbage",
        "n,,",
        "n,n=,r=abc",
        "x,,n=,r=abc",
        "p=tls-server-end-point,,n=,r=abc",
        "n,a=admin,n=,r=abc",
        "n,,m=ext,n=,r=abc",
        "n,,r=abc",
        "n,,n=",
        "n,,n=,r=",
        "n,,n=,x=abc",
        "n,,n=,r=ab c",
        "n,,n=,r=abc,junk",
        "n,,n=,r=abc,="
      })
  void rejectsMalformedClientFirst(String message) {
    ScramServer server = new ScramServer(RFC_SECRET, RANDOM);
    assertThatThrownBy(() -> server.serverFirst(bytes(message)))
        .isInstanceOf(AuthException.class)
        .hasMessageNotContaining("pencil");
  }

  @Test
  void rejectsInvalidUtf8AndNull() {
    ScramServer server = new ScramServer(RFC_SECRET, RANDOM);
    assertThatThrownBy(() -> server.serverFirst(new byte[] {'n', ',', ',', (byte) 0xff}))
        .isInstanceOf(AuthException.class)
        .hasMessageContaining("UTF-8");
    assertThatThrownBy(() -> new ScramServer(RFC_SECRET, RANDOM).serverFirst(null))
        .isInstanceOf(AuthException.class);
  }

  @Test
  void channelBindingRequestNamesTheProblem() {
    ScramServer server = new ScramServer(RFC_SECRET, RANDOM);
    assertThatThrownBy(() -> server.serverFirst(bytes("p=tls-server-end-point,,n=,r=abc")))
        .isInstanceOf(AuthException.class)
        .hasMessageContaining("channel binding");
  }

  @ParameterizedTest
  @ValueSource(
      strings = {
        "",
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        "c=biws,r=rOprNGfwEbeRWgbNEkqOwrong,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        "c=eSws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
            + "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        "c=!!!!,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
            + "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=not*base64",
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzb",
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,c=biws,"
            + "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        "c=biws,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
      })
  void rejectsMalformedClientFinal(String message) throws Exception {
    ScramServer server = rfcServer();
    server.serverFirst(bytes(RFC_CLIENT_FIRST));
    assertThatThrownBy(() -> server.serverFinal(bytes(message))).isInstanceOf(AuthException.class);
  }

  @Test
  void rejectsMessagesOutOfOrder() throws Exception {
    ScramServer server = rfcServer();
    assertThatThrownBy(() -> server.serverFinal(bytes(RFC_CLIENT_FINAL)))
        .isInstanceOf(AuthException.class)
        .hasMessageContaining("unexpected");

    ScramServer twice = rfcServer();
    twice.serverFirst(bytes(RFC_CLIENT_FIRST));
    assertThatThrownBy(() -> twice.serverFirst(bytes(RFC_CLIENT_FIRST)))
        .isInstanceOf(AuthException.class);
  }

  @Test
  void failedExchangeCannotBeRetried() throws Exception {
    ScramServer server = rfcServer();
    server.serverFirst(bytes(RFC_CLIENT_FIRST));
    assertThatThrownBy(() -> server.serverFinal(bytes("garbage")))
        .isInstanceOf(AuthException.class);
    assertThatThrownBy(() -> server.serverFinal(bytes(RFC_CLIENT_FINAL)))
        .isInstanceOf(AuthException.class)
        .hasMessageContaining("unexpected");
  }

  @Test
  void mockSecretIsStablePerUserAndNeverSucceeds() throws Exception {
    byte[] key = new byte[32];
    RANDOM.nextBytes(key);
    Secret.Scram ghost = Secret.Scram.mock("ghost", key);
    assertThat(Secret.Scram.mock("ghost", key)).isEqualTo(ghost);
    assertThat(Secret.Scram.mock("other", key).salt()).isNotEqualTo(ghost.salt());

    ScramServer server = new ScramServer(ghost, RANDOM);
    ScramLogin client = ScramLogin.withPassword("anything");
    byte[] first = server.serverFirst(client.clientFirst());
    byte[] clientFinal = client.clientFinal(first);
    assertThatThrownBy(() -> server.serverFinal(clientFinal))
        .isInstanceOf(AuthException.class)
        .hasMessage("password authentication failed");
  }

  static byte[] proof(String password, String authMessage) {
    byte[] clientKey =
        ScramCrypto.hmac(ScramCrypto.saltedPassword(password, RFC_SALT, 4096), "Client Key");
    byte[] signature = ScramCrypto.hmac(ScramCrypto.sha256(clientKey), authMessage);
    return ScramCrypto.xor(clientKey, signature);
  }

  static byte[] bytes(String s) {
    return s.getBytes(UTF_8);
  }

  static String text(byte[] b) {
    return new String(b, UTF_8);
  }

  static String b64(byte[] b) {
    return Base64.getEncoder().encodeToString(b);
  }
}
