console.log("loader");
